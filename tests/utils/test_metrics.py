"""evaluate_rank / rank_features against hand-computed cases and a textbook per-query loop."""

import numpy as np
import pytest
import torch

from utils.metrics import evaluate_rank, pairwise_distance, rank_features


def textbook(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, q_scenes=None, g_scenes=None):
    """The classic per-query loop (Market protocol; scene protocol when scene ids are given)."""
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        if q_scenes is None:
            junk = (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
        else:
            junk = (g_pids[order] == q_pids[i]) & (g_scenes[order] == q_scenes[i])
        raw = (g_pids[order] == q_pids[i])[~junk].astype(np.float64)
        if not raw.any():
            continue
        cmc = raw.cumsum()
        last = np.where(raw == 1)[0].max()
        all_inp.append(cmc[last] / (last + 1.0))
        cmc = np.minimum(cmc, 1.0)
        all_cmc.append(np.pad(cmc, (0, max(0, max_rank - len(cmc))), mode="edge")[:max_rank])
        hits = raw.cumsum() / (np.arange(len(raw)) + 1.0)
        all_ap.append((hits * raw).sum() / raw.sum())
    return np.mean(all_cmc, 0), float(np.mean(all_ap)), float(np.mean(all_inp))


def test_hand_computed_market():
    # Query 0 (id 1, cam 0): gallery sorted by distance = g0 (id 1, cam 0: junk), g1 (id 2),
    # g2 (id 1, cam 1: hit at kept rank 2), g3 (id 3), g4 (id 1, cam 2: hit at kept rank 4).
    # AP = (1/2 + 2/4) / 2 = 0.5; INP = 2 / 4.
    # Query 1 (id 3, cam 1): g3 (id 3, cam 0) is the only match, at rank 2 -> AP = INP = 0.5.
    # Query 2 (id 9) has no match and is skipped.
    dist = np.array(
        [[0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 0.5, 6.0, 1.0, 7.0], [1.0, 2.0, 3.0, 4.0, 5.0]]
    )
    g_pids, g_cams = np.array([1, 2, 1, 3, 1]), np.array([0, 0, 1, 0, 2])
    cmc, m_ap, m_inp = evaluate_rank(
        dist, np.array([1, 3, 9]), g_pids, np.array([0, 1, 0]), g_cams, max_rank=5
    )
    np.testing.assert_allclose(cmc, [0.0, 1.0, 1.0, 1.0, 1.0])
    assert m_ap == pytest.approx(0.5)
    assert m_inp == pytest.approx(0.5)


def test_hand_computed_scene_protocol_ignores_cameras():
    # Same id, same camera but another scene is a valid match; same id and same scene is junk.
    dist = np.array([[0.1, 0.2, 0.3]])
    args = (np.array([5]), np.array([5, 5, 7]), np.array([0]), np.array([0, 0, 0]))
    cmc, m_ap, m_inp = evaluate_rank(
        dist, *args, max_rank=3, q_scenes=np.array([2]), g_scenes=np.array([2, 3, 3])
    )
    np.testing.assert_allclose(cmc, [1.0, 1.0, 1.0])
    assert m_ap == pytest.approx(1.0) and m_inp == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no query"):
        evaluate_rank(dist, *args, max_rank=3)  # camera protocol: the only matches are junk


def _random_case(rng, nq=37, ng=211, ids=9):
    return dict(
        distmat=rng.random((nq, ng)),
        q_pids=rng.integers(0, ids, nq),
        g_pids=rng.integers(0, ids, ng),
        q_camids=rng.integers(0, 3, nq),
        g_camids=rng.integers(0, 3, ng),
    )


@pytest.mark.parametrize("scenes", [False, True])
@pytest.mark.parametrize("as_torch", [False, True])
def test_matches_textbook_on_random_matrices(scenes, as_torch):
    rng = np.random.default_rng(0)
    case = _random_case(rng)
    if scenes:
        case.update(q_scenes=rng.integers(0, 4, 37), g_scenes=rng.integers(0, 4, 211))
    want = textbook(max_rank=50, **case)
    given = {k: torch.from_numpy(v) for k, v in case.items()} if as_torch else case
    # A small block forces several query chunks.
    got = evaluate_rank(max_rank=50, block=1000, **given)
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)
    assert got[1] == pytest.approx(want[1], abs=1e-6)
    assert got[2] == pytest.approx(want[2], abs=1e-6)


def test_rank_features_equals_full_matrix():
    rng = np.random.default_rng(1)
    q, g = torch.randn(40, 16), torch.randn(300, 16)
    ids = dict(
        q_pids=rng.integers(0, 10, 40),
        g_pids=rng.integers(0, 10, 300),
        q_camids=rng.integers(0, 2, 40),
        g_camids=rng.integers(0, 2, 300),
    )
    full = pairwise_distance(q.double(), g.double()).numpy()
    want = textbook(full, max_rank=20, **ids)
    got = rank_features(q, g, max_rank=20, block=700, **ids)
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)
    assert got[1] == pytest.approx(want[1], abs=1e-6)
    assert got[2] == pytest.approx(want[2], abs=1e-6)


def test_queries_without_a_valid_match_are_skipped_and_named():
    # Gallery: g0 (id 1, cam 0), g1 (id 2, cam 1), g2 (id 1, cam 1), g3 (id 4, cam 0).
    # q0 (id 1, cam 0): g0 is junk; order g0 g1 g2 g3 -> kept g1 g2 g3, hit at kept rank 2:
    #   AP 1/2, INP 1/2. q1 (id 4, cam 0): its only same-id item g3 has its camera -> skipped.
    # q2 (id 7): absent from the gallery -> skipped. q3 (id 2, cam 0): order g2 g3 g0 g1, hit at
    #   rank 4: AP = INP = 1/4. mAP = mINP = 3/8; CMC = [0, 1/2, 1/2, 1].
    from data.datasets.base import Record, unmatched_queries

    dist = np.array(
        [[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], [0.5, 0.9, 0.1, 0.2]]
    )
    q_pids, q_cams = np.array([1, 4, 7, 2]), np.array([0, 0, 0, 0])
    g_pids, g_cams = np.array([1, 2, 1, 4]), np.array([0, 1, 1, 0])
    cmc, m_ap, m_inp = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=4)
    np.testing.assert_allclose(cmc, [0.0, 0.5, 0.5, 1.0])
    assert m_ap == pytest.approx(3 / 8) and m_inp == pytest.approx(3 / 8)
    kept = [0, 3]  # the same numbers from the valid queries alone
    again = evaluate_rank(dist[kept], q_pids[kept], g_pids, q_cams[kept], g_cams, max_rank=4)
    np.testing.assert_allclose(again[0], cmc)
    assert again[1:] == pytest.approx((m_ap, m_inp))

    def records(pids, cams, scenes=None):
        scenes = [-1] * len(pids) if scenes is None else scenes
        return [
            Record({}, int(p), int(c), int(s), key=f"s{i}")
            for i, (p, c, s) in enumerate(zip(pids, cams, scenes))
        ]

    query, gallery = records(q_pids, q_cams), records(g_pids, g_cams)
    assert unmatched_queries(query, gallery, "market") == [1, 2]
    # Scene protocol (scenes: queries 0; gallery 0 0 1 1), cameras ignored: q1 now matches g3
    # (another scene), q3's only same-id item g1 shares its scene, q2 is still absent.
    query, gallery = records(q_pids, q_cams, [0, 0, 0, 0]), records(g_pids, g_cams, [0, 0, 1, 1])
    assert unmatched_queries(query, gallery, "scene") == [2, 3]
    got = evaluate_rank(
        dist,
        q_pids,
        g_pids,
        q_cams,
        g_cams,
        max_rank=4,
        q_scenes=np.zeros(4),
        g_scenes=np.array([0, 0, 1, 1]),
    )
    want = evaluate_rank(
        dist[:2],
        q_pids[:2],
        g_pids,
        q_cams[:2],
        g_cams,
        max_rank=4,
        q_scenes=np.zeros(2),
        g_scenes=np.array([0, 0, 1, 1]),
    )
    np.testing.assert_allclose(got[0], want[0])
    assert got[1:] == pytest.approx(want[1:])
