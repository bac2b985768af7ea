"""The vectorised re-ranking against a per-sample loop written from the paper's definitions."""

import numpy as np
import torch

from utils.metrics import evaluate_rank
from utils.reranking import re_ranking


def loop_re_ranking(q, g, k1, k2, lam):
    feats = np.concatenate([q, g]).astype(np.float64)
    nq, n = len(q), len(feats)
    sq = (feats**2).sum(1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * feats @ feats.T, 0)
    dist = (dist / dist.max(axis=0)).T
    rank = np.argsort(dist, axis=1, kind="stable")

    def recip(i, k):
        fwd = rank[i, : k + 1]
        return np.array([j for j in fwd if i in rank[j, : k + 1]])

    v = np.zeros((n, n))
    for i in range(n):
        r = recip(i, k1)
        grown = list(r)
        for c in r:
            rc = recip(c, int(round(k1 / 2)))
            if len(np.intersect1d(rc, r)) > 2 / 3 * len(rc):
                grown.extend(rc)
        idx = np.unique(grown)
        w = np.exp(-dist[i, idx])
        v[i, idx] = w / w.sum()
    v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    out = np.zeros((nq, n - nq))
    for i in range(nq):
        for j in range(nq, n):
            inter = np.minimum(v[i], v[j]).sum()
            out[i, j - nq] = 1 - inter / (2 - inter)
    return (1 - lam) * out + lam * dist[:nq, nq:]


def test_matches_loop_implementation():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(12, 8)), rng.normal(size=(30, 8))
    want = loop_re_ranking(q, g, k1=6, k2=3, lam=0.3)
    got = re_ranking(
        torch.from_numpy(q), torch.from_numpy(g), k1=6, k2=3, lambda_value=0.3, block=50
    )
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_reranking_helps_on_clustered_data():
    # Noisy identity clusters: re-ranking, which exploits the neighbourhood structure, must help.
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(10, 16, generator=gen)
    pids = torch.arange(10).repeat_interleave(6)
    feats = centers[pids] + 0.6 * torch.randn(60, 16, generator=gen)
    cams = torch.arange(60) % 3
    q, g = feats[::3], feats
    qp, qc = pids[::3], cams[::3]
    plain = ((q[:, None] - g[None]) ** 2).sum(-1)
    base = evaluate_rank(plain, qp, pids, qc, cams)[1]
    rr = evaluate_rank(re_ranking(q, g, k1=8, k2=3), qp, pids, qc, cams)[1]
    assert rr > base, (rr, base)
