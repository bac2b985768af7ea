"""SDTPS behaviour: Gumbel straight-through, gradient flow, learning predictor, half precision,
and the default training forward / backward frozen in a fixture.

The fixture is rewritten (only when a change of the default path is intended) with
`PYTHONPATH=. .venv/bin/python tests/modeling/test_sdtps.py --write-fixture`.
"""

import sys
from pathlib import Path

import torch

from config import load_config
from modeling import build_model
from modeling.fusion.sdtps import MultiModalSDTPS

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
