"""SDTPS behaviour: Gumbel straight-through, gradient flow, learning predictor, half precision,
and the default training forward / backward frozen in a fixture.

The fixture is rewritten (only when a change of the default path is intended) with
`PYTHONPATH=. .venv/bin/python tests/modeling/test_sdtps.py --write-fixture`.
"""

import sys
from pathlib import Path

import pytest
import torch

from config import ConfigError, load_config
from modeling import build_model
from modeling.fusion.sdtps import MultiModalSDTPS, minmax_cosine

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "sdtps_default_train.pt"
# A smaller model than configs/_smoke (C=32, one block) keeps the fixture under 300 KB.
FIXTURE_OPTS = tuple(
    "MODEL.TINY.WIDTH 32 MODEL.TINY.EMBED_DIM 32 MODEL.TINY.DEPTH 1 MODEL.TINY.HEADS 2".split()
)


def _inputs(n=32, c=48, b=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    patches = [torch.randn(b, n, c, generator=g).to(dtype) for _ in range(3)]
    globals_ = [torch.randn(b, c, generator=g).to(dtype) for _ in range(3)]
    return patches, globals_


def test_forward_identical_with_gumbel_on_and_off(smoke_cfg, make_batch):
    outs = []
    for gumbel in ("False", "True"):
        cfg = smoke_cfg("DeMo_SDTPS", "MODEL.SDTPS_USE_GUMBEL", gumbel)
        torch.manual_seed(0)
        outs.append(build_model(cfg, 5, 4).train()(make_batch(cfg)))
    assert outs[0].keys() == outs[1].keys()
    for k in outs[0]:
        assert torch.equal(outs[0][k], outs[1][k]), k


def _score_grad(use_gumbel):
    """Gradient that a loss on the SDTPS outputs sends back to the blended scores s (B, N)."""
    torch.manual_seed(0)
    module = MultiModalSDTPS(48, 32, use_gumbel=use_gumbel).train()
    patches, _ = _inputs()
    s = torch.rand(3, 32, requires_grad=True)
    kept, extra, mask, kept_idx = module.sparse[0].select(
        patches[0], s, 1.0 if use_gumbel else None
    )
    tokens, _ = module.aggr[0](kept, mask.gather(1, kept_idx))
    target = torch.randn(3, module.num_out + 1, 48, generator=torch.Generator().manual_seed(1))
    (torch.cat([tokens, extra], dim=1) * target).sum().backward()
    return s.grad, kept_idx


def test_kept_scores_gradient_only_with_gumbel():
    grad, kept_idx = _score_grad(False)
    assert torch.equal(grad.gather(1, kept_idx), torch.zeros_like(kept_idx, dtype=grad.dtype))
    grad, kept_idx = _score_grad(True)
    kept = grad.gather(1, kept_idx)
    assert torch.isfinite(kept).all()
    assert kept.abs().max() > 0 and kept.abs().max() < 1e3


def test_scores_are_gradient_free_but_tokens_are_not():
    module = MultiModalSDTPS(48, 32).train()
    patches, globals_ = _inputs()
    patches = [p.requires_grad_() for p in patches]
    globals_ = [g.requires_grad_() for g in globals_]
    module(patches, globals_)["feat"].sum().backward()
    assert all(g.grad is None for g in globals_)  # globals only enter the no_grad scores
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in patches)


def test_predictor_learns():
    torch.manual_seed(0)
    module = MultiModalSDTPS(48, 32, use_gumbel=True).train()
    patches, globals_ = _inputs()
    target = torch.randn(3, 3 * 48, generator=torch.Generator().manual_seed(2))
    params = [p for n, p in module.named_parameters() if n.startswith("sparse.")]
    opt = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(15):
        loss = (module(patches, globals_)["feat"] - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_pure_half_is_finite():
    torch.manual_seed(0)
    module = MultiModalSDTPS(48, 32, use_gumbel=True).half().train()
    patches, globals_ = _inputs(dtype=torch.float16)
    patches = [p.requires_grad_() for p in patches]
    out = module(patches, globals_)
    assert out["feat"].dtype == torch.float16 and torch.isfinite(out["feat"]).all()
    out["feat"].float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)
    with torch.no_grad():
        assert torch.isfinite(module.eval()(patches, globals_)["feat"]).all()


def _kept_sets(module, patches, globals_):
    return [k.sort(dim=1).values for k in module(patches, globals_)["kept_index"]]


def test_sample_mode_redraws_the_kept_set_in_training_only():
    torch.manual_seed(0)
    patches, globals_ = _inputs()
    module = MultiModalSDTPS(48, 32, use_gumbel=True, gumbel_mode="sample").train()
    first, second = _kept_sets(module, patches, globals_), _kept_sets(module, patches, globals_)
    assert all(not torch.equal(a, b) for a, b in zip(first, second))
    module.eval()
    clean = _kept_sets(module, patches, globals_)
    assert all(torch.equal(a, b) for a, b in zip(clean, _kept_sets(module, patches, globals_)))
    # ste keeps the clean top-K in training as well
    module.gumbel_mode = "ste"
    module.train()
    assert all(torch.equal(a, b) for a, b in zip(clean, _kept_sets(module, patches, globals_)))


def _droppable_patch(module, patches, globals_):
    """Index of a patch the eval top-K drops in every sample of modality 0, lowest score first,
    that is no sample's min or max cosine (so moving it a little leaves the other scores bit-equal).
    """
    with torch.no_grad():
        kept = module.eval()(patches, globals_)["kept_index"][0]
        s = module.sparse[0].score(patches[0], globals_[0], globals_[1], globals_[2])
    extremes = set()
    for g in globals_:
        cos = minmax_cosine(patches[0], g)
        extremes |= set(cos.argmin(1).tolist()) | set(cos.argmax(1).tolist())
    dropped = [i for i in range(patches[0].shape[1]) if i not in extremes and not (kept == i).any()]
    return min(dropped, key=lambda i: float(s[:, i].max()))


def test_soft_mode_uses_dropped_patches_in_training_only():
    torch.manual_seed(0)
    module = MultiModalSDTPS(48, 32, use_gumbel=True, gumbel_mode="soft")
    patches, globals_ = _inputs(b=2)
    j = _droppable_patch(module, patches, globals_)
    moved = [p.clone() for p in patches]
    moved[0][:, j] += 0.01 * torch.randn(2, 48, generator=torch.Generator().manual_seed(3))
    nc = module.num_out

    def aggregated(p, train):
        torch.manual_seed(1)  # the same Gumbel draw for both inputs
        with torch.no_grad():
            out = module.train(train)(p, globals_)
        return out["tokens"][0][:, :nc], out["kept_index"][0]

    (eval_a, kept_a), (eval_b, kept_b) = aggregated(patches, False), aggregated(moved, False)
    assert torch.equal(kept_a, kept_b) and not (kept_a == j).any()
    assert torch.equal(eval_a, eval_b)
    assert not torch.equal(aggregated(patches, True)[0], aggregated(moved, True)[0])
    with torch.no_grad():  # every patch has a weight in every aggregated token
        assert module.train()(patches, globals_)["weights"][0].shape == (2, nc, 32)
    # the hard modes ignore that patch in training too (only the extra token sees it)
    module.gumbel_mode = "ste"
    assert torch.equal(aggregated(patches, True)[0], aggregated(moved, True)[0])


def test_soft_mask_is_a_relaxed_top_k():
    torch.manual_seed(0)
    module = MultiModalSDTPS(48, 32, use_gumbel=True, gumbel_mode="soft", gumbel_tau=1.0).train()
    patches, globals_ = _inputs()
    patches = [p.requires_grad_() for p in patches]
    d = module(patches, globals_)["mask"][0]
    assert d.min() > 0 and d.max() < 1
    torch.testing.assert_close(d.sum(1), torch.full((3,), 16.0), rtol=0, atol=1e-4)
    assert ((d > 0.05) & (d < 0.95)).float().mean() > 0.2  # tau 1: far from a hard mask
    d.sum().backward()  # the sum is fixed at K: no gradient reaches the patches through it
    assert patches[0].grad.abs().max() < 1e-4 * d.detach().mul(1 - d.detach()).max()
    module.gumbel_tau = 1e-3  # nearly hard: the top-K of the perturbed scores
    torch.manual_seed(5)
    with torch.no_grad():
        d = module(patches, globals_)["mask"][0]
    assert ((d < 1e-3) | (d > 1 - 1e-3)).all()
    assert torch.equal(d.round().sum(1), torch.full((3,), 16.0))


def test_score_grad_changes_the_backbone_gradient(smoke_cfg, make_batch):
    grads = []
    for on in ("False", "True"):
        cfg = smoke_cfg("DeMo_SDTPS", "MODEL.SDTPS_SCORE_GRAD", on)
        torch.manual_seed(0)
        model = build_model(cfg, 5, 4).train()
        out = model(make_batch(cfg))
        sum(v for k, v in out.items() if k.startswith("loss_")).backward()
        grads.append({n: p.grad for n, p in model.backbone.named_parameters()})
    assert all(torch.isfinite(g).all() for g in grads[1].values())
    assert any(not torch.equal(grads[0][n], grads[1][n]) for n in grads[0])


def test_score_grad_reaches_the_globals():
    module = MultiModalSDTPS(48, 32, score_grad=True).train()
    patches, globals_ = _inputs()
    globals_ = [g.requires_grad_() for g in globals_]
    module(patches, globals_)["feat"].sum().backward()
    assert all(g.grad is not None and g.grad.abs().sum() > 0 for g in globals_)


MODES = [(False, "ste"), (True, "ste"), (True, "sample"), (True, "soft")]


@pytest.mark.parametrize("use_gumbel,mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("score_grad", [False, True])
def test_low_precision_autocast_gradients_are_finite(use_gumbel, mode, dtype, score_grad):
    """CPU autocast (torch >= 2.1 has it for float16 too), the loss scaled by 2^16 in fp16 as
    GradScaler's first scale does."""
    torch.manual_seed(0)
    module = MultiModalSDTPS(
        48, 32, use_gumbel=use_gumbel, gumbel_mode=mode, score_grad=score_grad
    ).train()
    patches, globals_ = _inputs()
    patches = [p.requires_grad_() for p in patches]
    globals_ = [g.requires_grad_() for g in globals_]
    with torch.autocast("cpu", dtype=dtype):
        feat = module(patches, globals_)["feat"]
    assert torch.isfinite(feat).all()
    scale = 2.0**16 if dtype == torch.float16 else 1.0
    (feat.float().square().mean() * scale).backward()
    grads = [p.grad for p in module.parameters()] + [p.grad for p in patches]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(p.grad.abs().sum() > 0 for p in module.sparse.parameters())


@pytest.mark.parametrize("use_gumbel,mode", MODES)
def test_pure_half_modes_are_finite(use_gumbel, mode):
    torch.manual_seed(0)
    module = MultiModalSDTPS(48, 32, use_gumbel=use_gumbel, gumbel_mode=mode).half().train()
    patches, globals_ = _inputs(dtype=torch.float16)
    patches = [p.requires_grad_() for p in patches]
    feat = module(patches, globals_)["feat"]
    assert feat.dtype == torch.float16 and torch.isfinite(feat).all()
    (feat.float().square().mean() * 2.0**16).backward()  # a mean-type loss, as the real ones
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def _predictor_grads(dtype):
    """Gradients of one TokenSparse's predictor for a loss whose gradient at the scores is 1e-9:
    the size that reaches s_pred through the extra token's softmax at the RGBNT201 shapes."""
    torch.manual_seed(0)
    module = MultiModalSDTPS(48, 32).train()
    patches, globals_ = _inputs()
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        s = module.sparse[0].score(patches[0], globals_[0], globals_[1], globals_[2])
    (s * 1e-9).sum().backward()
    return torch.cat([p.grad.flatten() for p in module.sparse[0].parameters()]).double()


def test_score_predictor_gradient_survives_fp16_autocast():
    """The predictor's gradient here (about 1e-10 at fc2's output) is below fp16's smallest
    subnormal (6e-8), as the real model's (median 1e-8) is once GradScaler's scale falls below
    2^3; in fp16 it would be 0. The predictor runs in fp32, so it matches the fp32 gradient."""
    ref, got = _predictor_grads(torch.float32), _predictor_grads(torch.float16)
    assert got.abs().sum() > 0
    assert float((ref @ got) / (ref.norm() * got.norm())) > 0.9999
    assert abs(float(got.norm() / ref.norm()) - 1) < 1e-3


@pytest.mark.parametrize(
    "opts,named",
    [
        (("MODEL.SDTPS_GUMBEL_MODE", "hard"), "MODEL.SDTPS_GUMBEL_MODE 'hard' is not one of"),
        (("MODEL.SDTPS_GUMBEL_MODE", "sample"), "needs MODEL.SDTPS_USE_GUMBEL True"),
        (("MODEL.SDTPS_GUMBEL_MODE", "soft"), "needs MODEL.SDTPS_USE_GUMBEL True"),
    ],
)
def test_gumbel_mode_config_errors(opts, named):
    with pytest.raises(ConfigError, match=named):
        load_config(str(REPO / "configs" / "_smoke" / "DeMo_SDTPS.yml"), list(opts))


@pytest.mark.parametrize("mode", ["ste", "sample", "soft"])
def test_gumbel_modes_build_from_the_config(mode):
    cfg = load_config(
        str(REPO / "configs" / "_smoke" / "DeMo_SDTPS.yml"),
        [*FIXTURE_OPTS, "MODEL.SDTPS_USE_GUMBEL", "True", "MODEL.SDTPS_GUMBEL_MODE", mode],
    )
    assert build_model(cfg, 5, 4).sdtps.gumbel_mode == mode


def test_module_rejects_a_mode_without_gumbel():
    with pytest.raises(ValueError, match="SDTPS_USE_GUMBEL"):
        MultiModalSDTPS(48, 32, gumbel_mode="soft")


def _default_train_step(use_gumbel):
    """One training forward + backward of the smoke SDTPS model on a fixed batch (float32, CPU,
    one thread: the CPU kernels split their sums by thread count) -> plain tensors: the loss dict,
    the SDTPS output (`feat` (B, 3C), `tokens` (3, B, N_c + 1, C), `kept_index` (3, B, K)) and the
    gradients of every SDTPS and backbone parameter."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(
            str(REPO / "configs" / "_smoke" / "DeMo_SDTPS.yml"),
            [*FIXTURE_OPTS, "MODEL.SDTPS_USE_GUMBEL", str(use_gumbel)],
        )
        torch.manual_seed(0)
        model = build_model(cfg, 5, 4).train()
        h, w = cfg.INPUT.SIZE_TRAIN
        g = torch.Generator().manual_seed(0)
        batch = {
            "images": {m: torch.randn(8, 3, h, w, generator=g) for m in cfg.INPUT.MODALITIES},
            "pids": torch.arange(8) % 2,
            "camids": torch.arange(8) % 4,
        }
        seen = {}
        hook = model.sdtps.register_forward_hook(lambda mod, args, out: seen.update(out))
        torch.manual_seed(1)  # the Gumbel draw
        out = model(batch)
        hook.remove()
        sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    finally:
        torch.set_num_threads(threads)
    grads = {
        n: p.grad.detach().clone()
        for n, p in model.named_parameters()
        if n.startswith(("sdtps.", "backbone.")) and p.requires_grad
    }
    return {
        "outputs": {k: v.detach().clone() for k, v in out.items()},
        "feat": seen["feat"].detach().clone(),
        "tokens": torch.stack([t.detach() for t in seen["tokens"]]),
        "kept_index": torch.stack(seen["kept_index"]),
        "grads": grads,
    }


def _fixture_environment():
    return {"torch": str(torch.__version__), "cpu": torch.backends.cpu.get_cpu_capability()}


def write_fixture():
    FIXTURE.parent.mkdir(exist_ok=True)
    data = {f"gumbel_{g}": _default_train_step(g) for g in (False, True)}
    torch.save({"environment": _fixture_environment(), **data}, FIXTURE)


def _assert_same(ref, got, exact, where):
    if isinstance(ref, dict):
        assert ref.keys() == got.keys(), f"{where}: keys {sorted(ref)} != {sorted(got)}"
        for k in ref:
            _assert_same(ref[k], got[k], exact, f"{where}.{k}")
    elif exact:
        assert got.dtype == ref.dtype and torch.equal(got, ref), f"{where} changed"
    else:
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7, msg=f"{where} changed")


def test_default_training_step_matches_fixture():
    """The default (straight-through `ste`, and Gumbel off) training forward and backward are
    bit-identical to the stored ones; on another torch build or CPU instruction set (other kernels)
    they are compared to float32 rounding instead."""
    ref = torch.load(FIXTURE, weights_only=True)
    exact = ref.pop("environment") == _fixture_environment()
    for key, stored in ref.items():
        got = _default_train_step(key == "gumbel_True")
        assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in got["grads"].values())
        _assert_same(stored, got, exact, key)


if __name__ == "__main__" and sys.argv[1:] == ["--write-fixture"]:
    write_fixture()
