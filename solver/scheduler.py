"""DeMo's per-epoch cosine schedule, through timm.

timm's CosineLRScheduler takes each group's initial lr as that group's peak, while
`warmup_lr_init` and `lr_min` are absolute values shared by every group. That is exactly DeMo's
behaviour (SPEC 5): every group warms from WARMUP_FACTOR x BASE_LR and floors at
MIN_LR_FACTOR x BASE_LR, so the backbone (5e-6) warms *down* from 3.5e-5. The warm-up is not
subtracted from the cosine (warmup_prefix False).

Call `scheduler.step(epoch)` at the start of each epoch 1..MAX_EPOCHS.
"""

from timm.scheduler import CosineLRScheduler


def build_scheduler(cfg, optimizer):
    s = cfg.SOLVER
    noise = {}
    if s.LR_NOISE:
        # Multiplicative noise in (-0.67, 0.67), seeded 42 + epoch; epoch MAX_EPOCHS is noise-free.
        noise = dict(noise_range_t=(0, s.MAX_EPOCHS), noise_pct=0.67, noise_std=1.0, noise_seed=42)
    return CosineLRScheduler(
        optimizer,
        t_initial=s.MAX_EPOCHS,
        lr_min=s.MIN_LR_FACTOR * s.BASE_LR,
        warmup_t=s.WARMUP_EPOCHS,
        warmup_lr_init=s.WARMUP_FACTOR * s.BASE_LR,
        cycle_limit=1,
        t_in_epochs=True,
        **noise,
    )
