"""DeMo's fusion: PIFE (per-modality global reduce), HDM (seven query attentions), ATM (dense MoE).

Shapes: B samples, N patch tokens, C feature width; modalities in cfg.INPUT.MODALITIES order (R, N,
T). HDM's seven attentions and ATM's H x 7 experts are independent modules in DeMo; here each family
is stored stacked and computed in a few batched products (the same functions, far fewer kernels).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import QuickGELU

# The seven HDM features: modality subsets, in DeMo's order R, N, T, RN, RT, NT, RNT.
HDM_SUBSETS = ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))


class StackedLinear(nn.Module):
    """n independent Linear(in, out) layers as one (n, out, in) weight and (n, out) bias.

    x (..., n, in) -> (..., n, out): layer i applies to x[..., i, :]. Initialised like nn.Linear.
    """

    def __init__(self, n, in_features, out_features):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(n, out_features))
        bound = in_features**-0.5
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return torch.einsum("...ni,noi->...no", x, self.weight) + self.bias


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

    Attention s is DeMo's nn.MultiheadAttention(C, C/64 heads, dropout 0.1): `in_proj` row s holds
    its packed q/k/v projection (3C, C), `out_proj` row s its output projection. The output is the
    attention output only (no residual, norm or MLP): seven (B, C) features.

    The query is one learnt token, so its projection does not depend on the input, and the key and
    value projections fold through the attention exactly (softmax ignores the constant q.b_k; the
    weights sum to the value bias's factor):
        logits_t = (q W_k) . x_t / sqrt(d),    out = (sum_t p_t x_t) W_v^T + (sum_t p_t) b_v.
    Every subset and head then shares one product over all 3 x 129 tokens, the modalities outside a
    subset masked out: no per-token K/V projection (about 50 GMACs a batch of 64 in DeMo's form).
    """

    def __init__(self, dim, dropout=0.1):
        super().__init__()
        n = len(HDM_SUBSETS)
        self.heads = max(dim // 64, 1)
        self.dropout = dropout
        self.tokens = nn.Parameter(dim**-0.5 * torch.randn(n, dim))
        self.in_proj = StackedLinear(n, dim, 3 * dim)
        self.out_proj = StackedLinear(n, dim, dim)
        # nn.MultiheadAttention's initialisation
        bound = math.sqrt(6 / (4 * dim))  # xavier_uniform_ of a (3C, C) matrix
        nn.init.uniform_(self.in_proj.weight, -bound, bound)
        nn.init.zeros_(self.in_proj.bias)
        nn.init.zeros_(self.out_proj.bias)
        # which modalities each subset leaves out; a buffer, so that it lives on the model's
        # device (built per step, it would be a host-to-device copy every call)
        outside = [[m not in subset for m in range(3)] for subset in HDM_SUBSETS]
        self.register_buffer("outside", torch.tensor(outside), persistent=False)

    def forward(self, patches, globals_):
        """patches: list of (B, N, C); globals_: list of (B, C) -> list of seven (B, C)."""
        x = torch.cat(
            [torch.cat([g.unsqueeze(1), p], dim=1) for g, p in zip(globals_, patches)], dim=1
        )  # (B, 3T, C), T = 1 + N tokens per modality
        b, _, c = x.shape
        s, h = len(HDM_SUBSETS), self.heads
        d = c // h
        w_q, w_k, w_v = self.in_proj.weight.view(s, 3, h, d, c).unbind(1)  # (S, H, d, C) each
        b_q, _, b_v = self.in_proj.bias.view(s, 3, h, d).unbind(1)
        q = torch.einsum("sc,shdc->shd", self.tokens, w_q) + b_q
        u = torch.einsum("shd,shdc->shc", q, w_k) * d**-0.5  # the query folded through W_k
        logits = (x @ u.reshape(s * h, c).t()).view(b, len(globals_), -1, s, h)
        logits = logits.permute(0, 3, 4, 1, 2).masked_fill(
            self.outside.view(s, 1, -1, 1), float("-inf")
        )  # (B, S, H, 3, T)
        p = F.dropout(logits.flatten(3).softmax(dim=-1), self.dropout, self.training)
        pooled = (p.flatten(1, 2).to(x.dtype) @ x).view(b, s, h, c)  # (B, S, H, C)
        out = torch.einsum("bshc,shdc->bshd", pooled, w_v) + p.sum(-1, keepdim=True) * b_v
        return list(self.out_proj(out.flatten(2)).unbind(1))


class ATM(nn.Module):
    """Multi-head dense mixture of experts over the seven HDM features.

    Gate: [f_1 .. f_7] (7C) -> Linear -> QuickGELU -> BatchNorm1d -> Linear(no bias) = query; keys =
    Linear(no bias) of each feature; per head h a softmax over the 7 experts of q.k / sqrt(C/H).
    Expert (e, h): Linear(C/H, C/H) -> QuickGELU -> BatchNorm1d on chunk h of feature e, times its
    gate. The experts' linears are row e * H + h of `experts`; their BatchNorms, being per channel,
    are one BatchNorm1d(7C) over the output's channels.
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
        self.experts = StackedLinear(num_experts * heads, self.head_dim, self.head_dim)
        self.act = QuickGELU()
        self.expert_norm = nn.BatchNorm1d(num_experts * dim)

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
        x = torch.stack(feats, dim=1)  # (B, E, C)
        b = x.shape[0]
        y = self.act(self.experts(x.reshape(b, -1, self.head_dim)))  # (B, E * H, d)
        y = self.expert_norm(y.flatten(1)).view(b, self.num_experts, self.heads, self.head_dim)
        return (y * self.gates(x).transpose(1, 2).unsqueeze(-1)).flatten(1)
