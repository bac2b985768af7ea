"""ReID losses: label-smoothed cross-entropy and the batch-hard triplet (DeMo's recipe).

Both are computed in fp32 whatever the autocast dtype, so the loss values do not depend on AMP.
"""

import torch
import torch.nn.functional as F


def id_loss(logits, pids, epsilon=0.1):
    """logits (B, P), pids (B,) -> label-smoothed cross-entropy (scalar)."""
    return F.cross_entropy(logits.float(), pids, label_smoothing=epsilon)


def pairwise_euclidean(x):
    """x (B, D) -> Euclidean distances (B, B) in fp32, clamped away from 0 so sqrt stays
    differentiable.

    Autocast is off here: under fp16 autocast `x @ x.t()` would run in fp16, overflowing once
    feature norms pass about 181 (the loss then sits at ln 2 with zero gradient, and GradScaler
    sees nothing) and losing the small differences between near-identical features.
    """
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        sq = x.pow(2).sum(dim=1, keepdim=True)
        d2 = sq + sq.t() - 2 * (x @ x.t())
        return d2.clamp_min(1e-12).sqrt()


def triplet_loss(feat, pids, margin=None):
    """Batch-hard triplet on feat (B, D): hardest positive vs hardest negative per anchor.

    margin None: soft margin, mean(log(1 + exp(d_ap - d_an))); else mean(relu(d_ap - d_an + m)).
    The anchor itself counts as a positive (as in DeMo); anchors without a negative are left out
    (a batch with none gives 0).
    """
    dist = pairwise_euclidean(feat.float())
    same = pids.unsqueeze(0) == pids.unsqueeze(1)
    d_ap = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    d_an = dist.masked_fill(same, float("inf")).amin(dim=1)
    # Masking instead of indexing keeps the step free of host syncs (no data-dependent shapes).
    valid = torch.isfinite(d_ap) & torch.isfinite(d_an)
    gap = torch.where(valid, d_ap - d_an, torch.zeros_like(d_ap))
    per_anchor = F.softplus(gap) if margin is None else F.relu(gap + margin)
    return (per_anchor * valid).sum() / valid.sum().clamp_min(1)


def accuracy(logits, pids):
    """Top-1 accuracy, detached, for logging."""
    return (logits.detach().argmax(dim=1) == pids).float().mean()
