"""SDTPS: score-guided patch selection and aggregation per modality (SPEC.md 2.2).

For a target modality m with the two others a, b: scores s = (1 - 2 beta) s_pred + beta (s_a + s_b +
2 s_self) over its N patches, top-K kept (K = ceil(N * sparse)), the dropped ones fused into one
extra token, the kept ones aggregated into N_c = int(N * aggr * sparse) tokens. Output per modality:
(B, N_c + 1, C); feature = mean of those tokens; sdtps_feat = [R ; N ; T] (B, 3C).

With Gumbel on (training only) the decision matrix D follows one of GUMBEL_MODES:
- `ste`: the kept set is the top-K of s; D is the hard top-K mask forward and, backward, the
  gradient of softmax((s + g) / tau) (straight-through), g Gumbel noise.
- `sample`: the kept set is the top-K of s + g (Gumbel-top-K: K patches drawn without replacement
  from softmax(s)); D is straight-through as in `ste`, with that sampled set as the hard mask.
- `soft`: no hard choice; D is a relaxed top-K of (s + g) / tau in (0, 1)^N summing to K
  (`relaxed_topk`); all N patches enter the aggregation masked by D and the extra token pools
  them masked by 1 - D. As tau -> 0 this becomes the `sample` forward.
Evaluation always uses the hard top-K of the clean scores.
"""

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

GUMBEL_MODES = ("ste", "sample", "soft")


def minmax_cosine(patches, glob, eps=1e-8):
    """patches (B, N, C), glob (B, C) -> cosines min-max normalised per sample to [0, 1], (B, N),
    in fp32 (a 1e-8 epsilon is 0 in fp16)."""
    cos = (
        F.normalize(patches.float(), dim=-1) * F.normalize(glob.float(), dim=-1).unsqueeze(1)
    ).sum(-1)
    lo, hi = cos.amin(dim=1, keepdim=True), cos.amax(dim=1, keepdim=True)
    return (cos - lo) / (hi - lo + eps)


def gumbel_noise(s):
    """Gumbel(0, 1) noise shaped like s (B, N), fp32: -log(E), E ~ Exp(1), clamped away from 0."""
    return -torch.empty_like(s, dtype=torch.float32).exponential_().clamp_min(1e-20).log()


def relaxed_topk(logits, k, iters=40):
    """logits (B, N) fp32 -> soft top-k mask D (B, N): D_i = sigmoid(logits_i - t), t such that
    sum_i D_i = k. That is the top-k mask relaxed by a binary-entropy term (the "limited multi-label
    projection", Amos et al. 2019): every D_i lies in (0, 1), the row sums to k exactly, and D
    tends to the top-k mask of the logits as they are scaled up (a temperature going to 0).

    t is found by bisection without gradient (fixed `iters`: no host sync; 40 halvings of a bracket
    of width range + 40 reach fp32 resolution), and gets its implicit-function gradient,
    dt/dlogits_j = D_j (1 - D_j) / sum_i D_i (1 - D_i), so the backward keeps the sum at k.
    """
    with torch.no_grad():
        lo = logits.amin(dim=1, keepdim=True) - 20  # every sigmoid(logit - lo) > 1 - 3e-9
        hi = logits.amax(dim=1, keepdim=True) + 20  # every sigmoid(logit - hi) < 3e-9
        for _ in range(iters):
            t = (lo + hi) / 2
            above = torch.sigmoid(logits - t).sum(dim=1, keepdim=True) > k
            lo, hi = torch.where(above, t, lo), torch.where(above, hi, t)
        t = (lo + hi) / 2
        slope = torch.sigmoid(logits - t) * (1 - torch.sigmoid(logits - t))
        slope = slope / slope.sum(dim=1, keepdim=True).clamp_min(torch.finfo(slope.dtype).tiny)
    # zero forward, dt/dlogits backward
    t = t + (slope * (logits - logits.detach())).sum(dim=1, keepdim=True)
    return torch.sigmoid(logits - t)


class TokenSparse(nn.Module):
    """Scores the N patches of one modality, keeps the top K and fuses the rest into one token."""

    def __init__(self, dim, keep, beta, score_grad=False):
        super().__init__()
        self.keep, self.beta, self.score_grad = keep, beta, score_grad
        self.fc1 = nn.Linear(dim, dim // 4)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim // 4, 1)

    def score(self, patches, g_self, g_a, g_b):
        """(B, N, C) and three (B, C) -> s (B, N) fp32. The cosine guides are gradient-free unless
        `score_grad` (then patches and globals also learn through them)."""
        with contextlib.nullcontext() if self.score_grad else torch.no_grad():
            guide = (
                minmax_cosine(patches, g_a)
                + minmax_cosine(patches, g_b)
                + 2 * minmax_cosine(patches, g_self)
            )
        return (1 - 2 * self.beta) * self.predict(patches) + self.beta * guide

    def predict(self, patches):
        """s_pred = sigmoid(MLP(patches)) (B, N), computed in fp32 whatever the parameter or
        autocast dtype (a no-op in fp32).

        Why fp32: its gradient is tiny by construction (it reaches s only through the extra
        token's softmax over the N - K dropped scores, or the Gumbel mask): at fc2's output,
        median 1e-8 per element (10 % below 2e-9, max 8e-8) for the RGBNT201 shapes. In fp16 that
        times GradScaler's scale is subnormal (< 6e-5, fewer significant bits) below a scale of
        about 2^13 and flushes to zero below 2^3; with the MLP in fp16 the predictor's gradient had
        cosine 0.993 with fp32 at scale 2^8 and 0.66 at 2^4 (1.000 in fp32 at every scale). The
        cost is two small matmuls (C -> C/4 -> 1) per modality.
        """
        with torch.autocast(patches.device.type, enabled=False):
            x = patches.float()
            h = self.act(F.linear(x, self.fc1.weight.float(), self.fc1.bias.float()))
            return torch.sigmoid(
                F.linear(h, self.fc2.weight.float(), self.fc2.bias.float()).squeeze(-1)
            )

    def select(self, patches, s, gumbel_tau=None, mode="ste"):
        """patches (B, N, C), s (B, N) -> kept (B, K, C), extra (B, 1, C), D (B, N), index (B, K).

        Kept tokens come out in score order (`sample`: perturbed-score order). D is the hard mask
        of the kept set; with `gumbel_tau` it is a straight-through estimate whose backward is that
        of softmax((s + g) / tau), g Gumbel noise in fp32. `mode` "ste" ranks by s, "sample" by
        s + g (the same g as D's backward).
        """
        noise = None if gumbel_tau is None else gumbel_noise(s)
        rank = s if noise is None or mode == "ste" else s.float() + noise
        order = rank.argsort(dim=1, descending=True)
        kept_idx, drop_idx = order[:, : self.keep], order[:, self.keep :]
        c = patches.shape[-1]
        kept = patches.gather(1, kept_idx.unsqueeze(-1).expand(-1, -1, c))
        dropped = patches.gather(1, drop_idx.unsqueeze(-1).expand(-1, -1, c))
        w = s.gather(1, drop_idx).softmax(dim=1).to(patches.dtype)  # (B, N - K)
        extra = (w.unsqueeze(-1) * dropped).sum(dim=1, keepdim=True)
        hard = torch.zeros_like(s).scatter(1, kept_idx, 1.0)
        if noise is None:
            return kept, extra, hard, kept_idx
        soft = ((s.float() + noise) / gumbel_tau).softmax(dim=1)
        return kept, extra, hard + (soft - soft.detach()), kept_idx

    def relax(self, patches, s, gumbel_tau):
        """`soft` mode: patches (B, N, C), s (B, N) -> D = relaxed_topk((s + g) / tau, K) (B, N),
        extra (B, 1, C), index (B, K) of the K largest D (for logging and visualisation).

        The extra token is the soft counterpart of the hard path's softmax of the dropped scores:
        weights exp(s_i) (1 - D_i), normalised, which is that softmax exactly when D is the top-K
        mask.
        """
        d = relaxed_topk((s.float() + gumbel_noise(s)) / gumbel_tau, self.keep)
        e = (s.float() - s.float().amax(dim=1, keepdim=True).detach()).exp() * (1 - d)
        w = e / e.sum(dim=1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)
        extra = (w.to(patches.dtype).unsqueeze(-1) * patches).sum(dim=1, keepdim=True)
        return d, extra, d.topk(self.keep, dim=1).indices


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
        softmax, and the gradient that reaches D stays finite in any precision. (`soft` mode passes
        all N patches with their relaxed D.)
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
        gumbel_mode="ste",
        score_grad=False,
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
        if gumbel_mode not in GUMBEL_MODES:
            raise ValueError(
                f"MODEL.SDTPS_GUMBEL_MODE {gumbel_mode!r} is not one of {GUMBEL_MODES}"
            )
        if gumbel_mode != "ste" and not use_gumbel:
            raise ValueError(
                f"MODEL.SDTPS_GUMBEL_MODE {gumbel_mode!r} needs MODEL.SDTPS_USE_GUMBEL True"
            )
        self.use_gumbel, self.gumbel_tau, self.gumbel_mode = use_gumbel, gumbel_tau, gumbel_mode
        self.sparse = nn.ModuleList(
            TokenSparse(dim, self.keep, beta, score_grad) for _ in range(num_modalities)
        )
        self.aggr = nn.ModuleList(
            TokenAggregation(dim, self.num_out) for _ in range(num_modalities)
        )

    def forward(self, patches, globals_):
        """patches: list of (B, N, C); globals_: list of (B, C) -> dict with
        `tokens` (list of (B, N_c + 1, C)), `feat` (B, 3C), `mask` (list of D, (B, N)),
        `kept_index` (list of (B, K)) and `weights` (list of aggregation weights (B, N_c, K);
        (B, N_c, N) in `soft` training, where `kept_index` holds the K largest D).
        """
        n = patches[0].shape[1]
        if n != self.num_patches:
            raise ValueError(f"SDTPS was built for N={self.num_patches} patch tokens, got {n}")
        tau = self.gumbel_tau if (self.use_gumbel and self.training) else None
        soft = tau is not None and self.gumbel_mode == "soft"
        out = {"tokens": [], "mask": [], "kept_index": [], "weights": []}
        for m, (sparse, aggr) in enumerate(zip(self.sparse, self.aggr)):
            a, b = [i for i in range(len(patches)) if i != m]
            s = sparse.score(patches[m], globals_[m], globals_[a], globals_[b])
            if soft:
                mask, extra, kept_idx = sparse.relax(patches[m], s, tau)
                tokens, weights = aggr(patches[m], mask)
            else:
                kept, extra, mask, kept_idx = sparse.select(patches[m], s, tau, self.gumbel_mode)
                tokens, weights = aggr(kept, mask.gather(1, kept_idx))
            out["tokens"].append(torch.cat([tokens, extra], dim=1))
            out["mask"].append(mask)
            out["kept_index"].append(kept_idx)
            out["weights"].append(weights)
        out["feat"] = torch.cat([t.mean(dim=1) for t in out["tokens"]], dim=-1)
        return out
