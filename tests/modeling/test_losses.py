import pytest
import torch
import torch.nn.functional as F

from modeling.losses import id_loss, triplet_loss


def test_batch_hard_triplet_matches_a_per_anchor_loop():
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(8, 16, generator=g)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    dist = torch.cdist(feat, feat)
    soft, hard = [], []
    for i in range(8):
        ap = max(dist[i, j] for j in range(8) if pids[j] == pids[i])
        an = min(dist[i, j] for j in range(8) if pids[j] != pids[i])
        soft.append(F.softplus(ap - an))
        hard.append(F.relu(ap - an + 0.3))
    assert triplet_loss(feat, pids).item() == pytest.approx(torch.stack(soft).mean().item(), 1e-5)
    assert triplet_loss(feat, pids, 0.3).item() == pytest.approx(
        torch.stack(hard).mean().item(), 1e-5
    )


def test_triplet_without_negatives_is_zero_with_finite_gradients():
    feat = torch.randn(4, 8, requires_grad=True)
    loss = triplet_loss(feat, torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(feat.grad).all()


def test_label_smoothed_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    logp = logits.log_softmax(dim=1)[0]
    expected = -(0.9 + 0.1 / 3) * logp[0] - (0.1 / 3) * (logp[1] + logp[2])
    assert id_loss(logits, torch.tensor([0]), 0.1).item() == pytest.approx(expected.item(), 1e-6)


def test_triplet_distances_stay_fp32_under_fp16_autocast():
    """Features of norm ~400 overflow fp16's x @ x.t(): the loss must still see the distances."""
    import torch

    from modeling.losses import pairwise_euclidean, triplet_loss

    g = torch.Generator().manual_seed(0)
    x = (torch.randn(8, 64, generator=g) * 50).requires_grad_()
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    want = triplet_loss(x, pids)
    with torch.autocast("cpu", dtype=torch.float16):
        got = triplet_loss(x.half(), pids)
        assert pairwise_euclidean(x.half()).dtype == torch.float32
    assert torch.isfinite(got) and abs(got.item() - want.item()) < 1e-2 * max(1.0, want.item())
    got.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_triplet_distances_stay_fp32_under_bf16_autocast():
    """Features sharing a large common part differ by little: in bf16 (8 significant bits) the
    squared distances |a|² + |b|² − 2ab cancel to noise and the loss grows several-fold (old bf16
    runs logged an ori triplet loss of 1.7-2.5 where fp16 and fp32 gave 0.7); the loss must see
    fp32 distances."""
    import torch
    import torch.nn.functional as F

    from modeling.losses import triplet_loss

    g = torch.Generator().manual_seed(0)
    pids = torch.arange(8).repeat_interleave(4)
    centers = 0.3 * torch.randn(8, 256, generator=g)
    x = (
        10 * torch.randn(1, 256, generator=g)
        + centers[pids]
        + 0.5 * torch.randn(32, 256, generator=g)
    )
    want = triplet_loss(x, pids).item()
    xb = x.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = triplet_loss(xb, pids).item()
        # the same loss on the distances autocast computes when nothing keeps them in fp32
        sq = xb.float().pow(2).sum(dim=1, keepdim=True)
        naive = (sq + sq.t() - 2 * (xb @ xb.t())).clamp_min(1e-12).sqrt()
    same = pids[None] == pids[:, None]
    gap = naive.masked_fill(~same, -1e9).amax(1) - naive.masked_fill(same, 1e9).amin(1)
    assert F.softplus(gap).mean().item() > want + 1.0  # a case where bf16 products go wrong
    assert abs(got - want) < 0.02
