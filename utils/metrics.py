"""ReID ranking metrics: CMC, mAP and mINP, vectorised over the gallery and chunked over queries.

Protocols. Market (RGBNT201, RGBNT100): for each query, gallery items with the same id *and* the
same camera are removed. Scene (MSVR310, used when scene ids are given): same id and same scene
removed, cameras ignored. Queries left with no true match are skipped.

Everything runs on the device of the input tensors (numpy arrays go to the CPU). Only per-query
statistics (first-match rank, AP, INP) survive a chunk, so memory is O(chunk x G) whatever Q is.
"""

import numpy as np
import torch

# Elements of one (chunk, G) block; a block costs about 20 bytes an element (sort indices + masks).
DEFAULT_BLOCK = 1 << 24


def _tensor(x, device=None):
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device) if device is not None else t


def _chunk_stats(dist, qp, gp, qc, gc, qs=None, gs=None):
    """Per-query statistics of one block.

    dist: (c, G) distances; qp/qc/qs: (c,) ids; gp/gc/gs: (G,) ids.
    Returns first (c,) 1-based rank of the first true match among kept items, ap (c,), inp (c,)
    (float64) and valid (c,) bool (queries with at least one kept match).
    """
    order = torch.sort(dist, dim=1, stable=True).indices
    same_id = gp[order] == qp[:, None]
    if qs is not None:
        junk = same_id & (gs[order] == qs[:, None])
    else:
        junk = same_id & (gc[order] == qc[:, None])
    del order
    keep = ~junk
    match = same_id & keep
    kept_rank = torch.cumsum(keep, dim=1, dtype=torch.int32)  # 1-based rank in the kept list
    hits = torch.cumsum(match, dim=1, dtype=torch.int32)
    n_match = hits[:, -1].double()
    valid = n_match > 0
    precision = torch.where(match, hits.double() / kept_rank.clamp_min(1).double(), 0.0)
    ap = precision.sum(dim=1) / n_match.clamp_min(1)
    big = torch.iinfo(torch.int32).max
    first = torch.where(match, kept_rank, big).amin(dim=1)
    last = torch.where(match, kept_rank, 0).amax(dim=1)
    inp = n_match / last.clamp_min(1).double()
    return first, ap, inp, valid


def _rank_blocks(distance, n_q, n_g, dev, ids, max_rank, block):
    """Run `_chunk_stats` over query chunks; distance(s, e) gives the (e - s, G) block."""
    qp, gp, qc, gc, qs, gs = [None if a is None else _tensor(a, dev).long() for a in ids]
    if (qs is None) != (gs is None):
        raise ValueError("give both q_scenes and g_scenes, or neither")
    chunk = max(1, block // max(1, n_g))
    parts = []
    for s in range(0, n_q, chunk):
        e = s + chunk
        parts.append(
            _chunk_stats(
                distance(s, e), qp[s:e], gp, qc[s:e], gc, None if qs is None else qs[s:e], gs
            )
        )
    firsts, aps, inps, valids = zip(*parts)
    valid = torch.cat(valids)
    n = int(valid.sum())
    if n == 0:
        raise ValueError("no query has a true match left in the gallery; check the ids and cameras")
    first = torch.cat(firsts)[valid]
    ranks = torch.arange(1, max_rank + 1, device=dev)
    cmc = (first[:, None] <= ranks[None, :]).double().sum(0) / n
    m_ap = torch.cat(aps)[valid].mean().item()
    m_inp = torch.cat(inps)[valid].mean().item()
    return cmc.cpu().numpy(), m_ap, m_inp


def evaluate_rank(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank=50,
    q_scenes=None,
    g_scenes=None,
    block=DEFAULT_BLOCK,
):
    """CMC curve, mAP and mINP from a (Q, G) distance matrix (smaller = more similar).

    Inputs are numpy arrays or torch tensors (any device; work happens on distmat's device).
    With `q_scenes`/`g_scenes` the scene protocol replaces the camera protocol.
    Returns (cmc: np.ndarray (max_rank,), mAP: float, mINP: float), all fractions in [0, 1].
    """
    dist = _tensor(distmat)
    ids = (q_pids, g_pids, q_camids, g_camids, q_scenes, g_scenes)
    return _rank_blocks(
        lambda s, e: dist[s:e], dist.shape[0], dist.shape[1], dist.device, ids, max_rank, block
    )


def pairwise_distance(q, g):
    """Squared Euclidean distances (Q, G) between rows of q (Q, D) and g (G, D), clamped at 0."""
    d = (q * q).sum(1, keepdim=True) + (g * g).sum(1)[None, :] - 2.0 * (q @ g.T)
    return d.clamp_min_(0)


def rank_features(
    q_feats,
    g_feats,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank=50,
    q_scenes=None,
    g_scenes=None,
    block=DEFAULT_BLOCK,
):
    """`evaluate_rank` straight from features, never holding the full (Q, G) matrix.

    q_feats (Q, D), g_feats (G, D): float tensors or arrays; distances are squared Euclidean (the
    ranking equals the Euclidean one), computed chunk by chunk on the features' device.
    """
    q = _tensor(q_feats).float()
    g = _tensor(g_feats).float().to(q.device)
    ids = (q_pids, g_pids, q_camids, g_camids, q_scenes, g_scenes)
    return _rank_blocks(
        lambda s, e: pairwise_distance(q[s:e], g),
        q.shape[0],
        g.shape[0],
        q.device,
        ids,
        max_rank,
        block,
    )
