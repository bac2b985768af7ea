"""DeMo's fusion: PIFE (per-modality global reduce), HDM (seven query attentions), ATM (dense MoE).

Shapes: B samples, N patch tokens, C feature width; modalities in cfg.INPUT.MODALITIES order (R, N,
T).
"""

import torch
import torch.nn as nn
from timm.layers import QuickGELU

# The seven HDM features: modality subsets, in DeMo's order R, N, T, RN, RT, NT, RNT.
HDM_SUBSETS = ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))


class PIFE(nn.Module):
    """global_m = reduce_m([cls_m ; mean(patches_m)]), reduce = LayerNorm(2C) -> Linear(2C, C) ->
    QuickGELU.
    """

    def __init__(self, dim, num_modalities=3):
        super().__init__()
        self.reduce = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, dim), QuickGELU())
            for _ in range(num_modalities)
        )

    def forward(self, cls_tokens, patches):
        """cls_tokens: list of (B, C); patches: list of (B, N, C) -> list of (B, C)."""
        return [
            reduce(torch.cat([c, p.mean(dim=1)], dim=-1))
            for reduce, c, p in zip(self.reduce, cls_tokens, patches)
        ]


class HDM(nn.Module):
    """Seven learnable queries, each attending to `[global_m ; patches_m]` of its modality subset.

    The output is the attention output only (no residual, norm or MLP): seven (B, C) features.
    """

    def __init__(self, dim, dropout=0.1):
        super().__init__()
        self.tokens = nn.Parameter(dim**-0.5 * torch.randn(len(HDM_SUBSETS), dim))
        heads = max(dim // 64, 1)
        self.attn = nn.ModuleList(
            nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
            for _ in HDM_SUBSETS
        )

    def forward(self, patches, globals_):
        """patches: list of (B, N, C); globals_: list of (B, C) -> list of seven (B, C)."""
        seqs = [torch.cat([g.unsqueeze(1), p], dim=1) for g, p in zip(globals_, patches)]
        batch = seqs[0].shape[0]
        out = []
        for token, attn, subset in zip(self.tokens, self.attn, HDM_SUBSETS):
            kv = torch.cat([seqs[i] for i in subset], dim=1)  # (B, 129 * |subset|, C)
            query = token.to(kv.dtype).expand(batch, 1, -1)
            out.append(attn(query, kv, kv, need_weights=False)[0].squeeze(1))
        return out


class ATM(nn.Module):
    """Multi-head dense mixture of experts over the seven HDM features.

    Gate: [f_1 .. f_7] (7C) -> Linear -> QuickGELU -> BatchNorm1d -> Linear(no bias) = query; keys =
    Linear(no bias) of each feature; per head h a softmax over the 7 experts of q.k / sqrt(C/H).
    Expert (h, e): Linear(C/H, C/H) -> QuickGELU -> BatchNorm1d on chunk h of feature e, times its
    gate.
    Output (B, 7C), expert-major: [f_1 heads 1..H ; f_2 heads 1..H ; ...].
    """

    def __init__(self, dim, heads, num_experts=7):
        super().__init__()
        if dim % heads:
            raise ValueError(f"ATM heads ({heads}) must divide the feature width {dim}")
        self.heads, self.head_dim, self.num_experts = heads, dim // heads, num_experts
        self.gate = nn.Sequential(
            nn.Linear(num_experts * dim, dim), QuickGELU(), nn.BatchNorm1d(dim)
        )
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        d = self.head_dim
        self.experts = nn.ModuleList(
            nn.ModuleList(
                nn.Sequential(nn.Linear(d, d), QuickGELU(), nn.BatchNorm1d(d))
                for _ in range(num_experts)
            )
            for _ in range(heads)
        )

    def gates(self, x):
        """x: (B, E, C) -> gates (B, H, E)."""
        b, e, c = x.shape
        query = self.gate(x.reshape(b, e * c))
        q = self.q(query).view(b, self.heads, 1, self.head_dim)
        k = self.k(x).view(b, e, self.heads, self.head_dim).transpose(1, 2)  # (B, H, E, d)
        logits = (q @ k.transpose(-2, -1)).squeeze(2) * self.head_dim**-0.5
        return logits.softmax(dim=-1)

    def forward(self, feats):
        """feats: list of seven (B, C) -> (B, 7C)."""
        x = torch.stack(feats, dim=1)
        gates = self.gates(x)
        chunks = x.chunk(self.heads, dim=-1)  # H x (B, E, d)
        out = torch.stack(
            [
                torch.cat(
                    [
                        self.experts[h][e](chunks[h][:, e]) * gates[:, h, e : e + 1]
                        for h in range(self.heads)
                    ],
                    dim=-1,
                )
                for e in range(self.num_experts)
            ],
            dim=1,
        )  # (B, E, C)
        return out.flatten(1)
