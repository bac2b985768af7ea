"""Rank lists: each query triplet and its top-10 gallery triplets with their distances, green
border for the query's id, red for another, after the protocol's removal (same id and camera, or
same id and scene).

    python tools/visualize_ranks.py --config_file configs/RGBNT201/DeMo_SDTPS.yml \
        TEST.WEIGHT output/RGBNT201/DeMo_SDTPS/model_final.pth [--num 8] [--pattern 3] [--out DIR]

Features, normalisation (TEST.FEAT_NORM) and distances are those of the evaluation
(engine.extract_features, squared Euclidean); TEST.MISSING_MODALITIES zero-fills as in evaluation.
Queries are spread over identities, then cameras. One PNG per query (default OUTPUT_DIR/vis_ranks/),
the modalities stacked in each panel, each gallery item's distance under it (and in the log).
"""

import logging
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import PATTERN_NAMES  # noqa: E402
from engine import defaults, extract_features  # noqa: E402
from engine.evaluator import union_records  # noqa: E402
from modeling import select_pattern  # noqa: E402
from utils.metrics import pairwise_distance  # noqa: E402
from utils.visualize import (  # noqa: E402
    display_images,
    protocol_junk,
    rank_figure,
    save_figures,
    spread_indices,
)

logger = logging.getLogger(__name__)

TOP = 10


def ranked(cfg, q_feat, g_feats, q, gallery, protocol, top=TOP):
    """(indices, distances) of the top gallery records for one query (squared Euclidean on the
    evaluation's features), with the protocol's junk removed; ties broken by gallery order."""
    if cfg.TEST.FEAT_NORM:
        q_feat, g_feats = F.normalize(q_feat, dim=-1), F.normalize(g_feats, dim=-1)
    dist = pairwise_distance(q_feat[None], g_feats)[0]
    dist[protocol_junk(q, gallery, protocol)] = float("inf")
    order = torch.sort(dist, stable=True).indices
    keep = [int(i) for i in order[:top] if torch.isfinite(dist[i])]
    return keep, [float(dist[i]) for i in keep]


def caption(rec, rank=None, dist=None):
    head = "query" if rank is None else f"#{rank}"
    text = f"{head} id {rec.pid}\ncam {rec.camid + 1}" + (
        f" sc {rec.sceneid}" if rec.sceneid >= 0 else ""
    )
    return text + (f"\nd {dist:.3f}" if dist is not None else "")


def main(argv=None):
    parser = defaults.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=8, help="number of queries")
    parser.add_argument(
        "--pattern",
        type=int,
        default=0,
        help="return_pattern 1, 2 or 3 (default TEST.RETURN_PATTERN)",
    )
    parser.add_argument("--out", default="", help="folder (default OUTPUT_DIR/vis_ranks)")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f"--num {args.num}: give at least 1")
    cfg, device, splits, model, pattern = defaults.tool_model(args, args.pattern)
    out = args.out or os.path.join(cfg.OUTPUT_DIR, "vis_ranks")
    query = [splits.query[i] for i in spread_indices(splits.query, args.num)]
    gallery = splits.gallery
    records, q_idx, g_idx = union_records(query, gallery)
    feats = select_pattern(extract_features(cfg, model, records), pattern)
    q_feats, g_feats = feats[q_idx], feats[g_idx]
    mods, figures = cfg.INPUT.MODALITIES, []
    metric = (
        "squared Euclidean distance, L2-normalised features"
        if cfg.TEST.FEAT_NORM
        else "squared Euclidean distance"
    )
    for i, q in enumerate(query):
        top, dists = ranked(cfg, q_feats[i], g_feats, q, gallery, splits.protocol)
        panels = [
            (
                display_images(cfg, gallery[j]),
                caption(gallery[j], r + 1, d),
                gallery[j].pid == q.pid,
            )
            for r, (j, d) in enumerate(zip(top, dists))
        ]
        hits = sum(p[2] for p in panels)
        missing = "+".join(cfg.TEST.MISSING_MODALITIES) or "none"
        title = (
            f"{splits.name} query {i}, pattern {pattern} ({PATTERN_NAMES[pattern]}), missing "
            f"{missing}: {hits}/{len(panels)} correct in the top {TOP}"
        )
        logger.info(
            "query %d (id %d, camera %d), %s:\n%s",
            i,
            q.pid,
            q.camid + 1,
            metric,
            "\n".join(
                f"  #{r + 1:<2d} gallery {j:5d}  id {gallery[j].pid:5d}  camera "
                f"{gallery[j].camid + 1}  d {d:.4f}"
                + ("" if gallery[j].pid == q.pid else "  (other id)")
                for r, (j, d) in enumerate(zip(top, dists))
            ),
        )
        figures.append(
            rank_figure(
                (display_images(cfg, q), caption(q)), panels, mods, title, note=f"d: {metric}"
            )[0]
        )
    paths = save_figures(figures, query, out, mods[0])
    print(f"{len(paths)} rank pictures (pattern {pattern}) written to {out}")
    return paths


if __name__ == "__main__":
    defaults.run_cli(main)
