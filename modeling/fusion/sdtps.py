"""SDTPS: score-guided patch selection and aggregation per modality (SPEC.md 2.2).

For a target modality m with the two others a, b: scores s = (1 - 2 beta) s_pred + beta (s_a + s_b +
2 s_self) over its N patches, top-K kept (K = ceil(N * sparse)), the dropped ones fused into one
extra token, the kept ones aggregated into N_c = int(N * aggr * sparse) tokens. Output per modality:
(B, N_c + 1, C); feature = mean of those tokens; sdtps_feat = [R ; N ; T] (B, 3C).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def minmax_cosine(patches, glob, eps=1e-8):
    """patches (B, N, C), glob (B, C) -> cosines min-max normalised per sample to [0, 1], (B, N),
    in fp32 (a 1e-8 epsilon is 0 in fp16)."""
    cos = (
        F.normalize(patches.float(), dim=-1) * F.normalize(glob.float(), dim=-1).unsqueeze(1)
    ).sum(-1)
    lo, hi = cos.amin(dim=1, keepdim=True), cos.amax(dim=1, keepdim=True)
    return (cos - lo) / (hi - lo + eps)


class TokenSparse(nn.Module):
    """Scores the N patches of one modality, keeps the top K and fuses the rest into one token."""

    def __init__(self, dim, keep, beta):
        super().__init__()
        self.keep, self.beta = keep, beta
        self.fc1 = nn.Linear(dim, dim // 4)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim // 4, 1)

    def score(self, patches, g_self, g_a, g_b):
        """(B, N, C) and three (B, C) -> s (B, N) fp32; only the predictor term carries gradient."""
        with torch.no_grad():
            guide = (
                minmax_cosine(patches, g_a)
                + minmax_cosine(patches, g_b)
                + 2 * minmax_cosine(patches, g_self)
            )
        s_pred = torch.sigmoid(self.fc2(self.act(self.fc1(patches))).squeeze(-1).float())
        return (1 - 2 * self.beta) * s_pred + self.beta * guide

    def select(self, patches, s, gumbel_tau=None):
        """patches (B, N, C), s (B, N) -> kept (B, K, C), extra (B, 1, C), D (B, N), index (B, K).

        Kept tokens come out in score order. D is the hard top-K mask; with `gumbel_tau` it is a
        straight-through estimate whose backward is that of softmax((s + g) / tau), g Gumbel noise
        in fp32.
        """
        order = s.argsort(dim=1, descending=True)
        kept_idx, drop_idx = order[:, : self.keep], order[:, self.keep :]
        c = patches.shape[-1]
        kept = patches.gather(1, kept_idx.unsqueeze(-1).expand(-1, -1, c))
        dropped = patches.gather(1, drop_idx.unsqueeze(-1).expand(-1, -1, c))
        w = s.gather(1, drop_idx).softmax(dim=1).to(patches.dtype)  # (B, N - K)
        extra = (w.unsqueeze(-1) * dropped).sum(dim=1, keepdim=True)
        hard = torch.zeros_like(s).scatter(1, kept_idx, 1.0)
        if gumbel_tau is None:
            return kept, extra, hard, kept_idx
        s32 = s.float()
        noise = -torch.empty_like(s32).exponential_().clamp_min(1e-20).log()
        soft = ((s32 + noise) / gumbel_tau).softmax(dim=1)
        return kept, extra, hard + (soft - soft.detach()), kept_idx


class TokenAggregation(nn.Module):
    """K kept tokens -> N_c tokens; weights: masked softmax over K of scale * MLP(LayerNorm(x))."""

    def __init__(self, dim, num_out):
        super().__init__()
        hidden = int(0.2 * dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, num_out)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, kept, keep_mask):
        """kept (B, K, C), keep_mask (B, K) = D on the kept tokens -> (B, N_c, C), (B, N_c, K).

        D multiplies the exponentials (a masked softmax): a 0 removes a token, a 1 leaves the plain
        softmax, and the gradient that reaches D stays finite in any precision.
        """
        logits = (self.fc2(self.act(self.fc1(self.norm(kept)))) * self.scale).transpose(1, 2)
        logits = logits - logits.amax(dim=-1, keepdim=True).detach()
        e = logits.exp() * keep_mask.unsqueeze(1).to(logits.dtype)
        weights = e / e.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)
        return weights @ kept, weights


class MultiModalSDTPS(nn.Module):
    """SDTPS over the three modalities; N (patch count) is fixed when built."""

    def __init__(
        self,
        dim,
        num_patches,
        sparse_ratio=0.5,
        aggr_ratio=0.4,
        beta=0.25,
        use_gumbel=False,
        gumbel_tau=1.0,
        num_modalities=3,
    ):
        super().__init__()
        self.num_patches = num_patches
        self.keep = math.ceil(num_patches * sparse_ratio)
        self.num_out = int(num_patches * aggr_ratio * sparse_ratio)
        if not (1 <= self.num_out and self.keep < num_patches):
            raise ValueError(
                f"MODEL.SDTPS_SPARSE_RATIO {sparse_ratio} and MODEL.SDTPS_AGGR_RATIO {aggr_ratio} "
                f"give K={self.keep}, N_c={self.num_out} for the backbone's N={num_patches} "
                "patches; need K < N and N_c >= 1"
            )
        self.use_gumbel, self.gumbel_tau = use_gumbel, gumbel_tau
        self.sparse = nn.ModuleList(
            TokenSparse(dim, self.keep, beta) for _ in range(num_modalities)
        )
        self.aggr = nn.ModuleList(
            TokenAggregation(dim, self.num_out) for _ in range(num_modalities)
        )

    def forward(self, patches, globals_):
        """patches: list of (B, N, C); globals_: list of (B, C) -> dict with
        `tokens` (list of (B, N_c + 1, C)), `feat` (B, 3C), `mask` (list of D, (B, N)),
        `kept_index` (list of (B, K)) and `weights` (list of aggregation weights (B, N_c, K)).
        """
        n = patches[0].shape[1]
        if n != self.num_patches:
            raise ValueError(f"SDTPS was built for N={self.num_patches} patch tokens, got {n}")
        tau = self.gumbel_tau if (self.use_gumbel and self.training) else None
        out = {"tokens": [], "mask": [], "kept_index": [], "weights": []}
        for m, (sparse, aggr) in enumerate(zip(self.sparse, self.aggr)):
            a, b = [i for i in range(len(patches)) if i != m]
            s = sparse.score(patches[m], globals_[m], globals_[a], globals_[b])
            kept, extra, mask, kept_idx = sparse.select(patches[m], s, tau)
            tokens, weights = aggr(kept, mask.gather(1, kept_idx))
            out["tokens"].append(torch.cat([tokens, extra], dim=1))
            out["mask"].append(mask)
            out["kept_index"].append(kept_idx)
            out["weights"].append(weights)
        out["feat"] = torch.cat([t.mean(dim=1) for t in out["tokens"]], dim=-1)
        return out
