"""SDTPS behaviour: Gumbel straight-through, gradient flow, learning predictor, half precision."""

import torch

from modeling import build_model
from modeling.fusion.sdtps import MultiModalSDTPS


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
