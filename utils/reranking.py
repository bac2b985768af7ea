"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), vectorised with dense torch masks.

With N = Q + G probe-and-gallery samples:
1. d(i, j): squared Euclidean distance, each column divided by its maximum.
2. R(i, k): the k-reciprocal neighbours of i (j in top-k of i and i in top-k of j, self included).
3. R*(i): R(i, k1) expanded by R(c, k1/2) of each c in R(i, k1) that shares more than 2/3 of its
   own set with R(i, k1).
4. V(i, j) = exp(-d(i, j)) over R*(i), rows normalised to sum 1; then averaged over the k2 nearest
   neighbours of i (local query expansion).
5. Jaccard distance J(i, j) = 1 - sum_k min(V_ik, V_jk) / sum_k max(V_ik, V_jk).
6. final = (1 - lambda) J + lambda d, restricted to (query, gallery).

Memory is O(N^2); use it for test sets of up to some tens of thousands of samples.
"""

import torch

from .metrics import pairwise_distance


def _topk_mask(order, k):
    """(N, N) bool: mask[i, j] = j among the k nearest of i (order: (N, >=k) neighbour indices)."""
    n = order.shape[0]
    mask = torch.zeros(n, n, dtype=torch.bool, device=order.device)
    mask.scatter_(1, order[:, :k], True)
    return mask


def _reciprocal(order, k):
    m = _topk_mask(order, k)
    return m & m.T


def re_ranking(q_feats, g_feats, k1=20, k2=6, lambda_value=0.3, block=1 << 24):
    """Re-ranked (Q, G) distance matrix from q_feats (Q, D) and g_feats (G, D), on their device.

    `block` bounds the elements of the temporary (G, rows, support) tensor of the Jaccard step.
    """
    q = q_feats.float()
    feats = torch.cat([q, g_feats.float().to(q.device)])
    nq, n = q.shape[0], feats.shape[0]
    dist = pairwise_distance(feats, feats)
    dist = (dist / dist.amax(dim=0, keepdim=True).clamp_min(1e-12)).T.contiguous()
    k1, k2 = min(k1, n - 1), max(1, min(k2, n))
    order = torch.argsort(dist, dim=1, stable=True)[:, : k1 + 1]

    recip = _reciprocal(order, k1 + 1)
    half = _reciprocal(order, int(round(k1 / 2)) + 1)
    # overlap[c, i] = |R(c, k1/2) & R(i, k1)|; c expands i when it shares more than 2/3 of its set.
    half_f = half.float()
    overlap = half_f @ recip.float().T
    grows = recip & (overlap.T > (2.0 / 3.0) * half_f.sum(1)[None, :])
    expanded = recip | ((grows.float() @ half_f) > 0)

    v = torch.where(expanded, torch.exp(-dist), 0.0)
    v = v / v.sum(1, keepdim=True)
    if k2 > 1:
        v = (_topk_mask(order, k2).float() @ v) / k2

    # Jaccard over the support of each query row: sum_k min(V_ik, V_jk) needs only k in supp(V_i).
    support = int((v[:nq] > 0).sum(1).max())
    vals, idx = v[:nq].topk(support, dim=1)
    vg = v[nq:]
    jaccard = torch.empty(nq, n - nq, device=v.device)
    rows = max(1, block // max(1, (n - nq) * support))  # queries per (G, rows, support) block
    for s in range(0, nq, rows):
        e = min(nq, s + rows)
        cols = vg[:, idx[s:e]]  # (G, b, support)
        inter = torch.minimum(cols, vals[s:e][None]).sum(-1).T  # (b, G)
        jaccard[s:e] = 1.0 - inter / (2.0 - inter)
    return (1 - lambda_value) * jaccard + lambda_value * dist[:nq, nq:]
