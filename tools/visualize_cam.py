"""Grad-CAM per modality: where in the RGB / NI / TI images the model looks for a test triplet.

    python tools/visualize_cam.py --config_file configs/RGBNT201/DeMo_SDTPS.yml \
        TEST.WEIGHT output/RGBNT201/DeMo_SDTPS/model_final.pth [--num 8] [--pattern 3] \
        [--split query|train] [--out DIR]

Grad-CAM on the patch tokens of the backbone's last block, per modality (engine/cam.py), of a score
of the return_pattern's feature (default TEST.RETURN_PATTERN): for a train triplet the classifier
logit of its own id; for a query triplet (test ids are not training classes) the cosine similarity
to its best same-id gallery match after the protocol's removal (the evaluation's features), or,
without one, the feature's length along its own direction. Each picture says which target it used.
TEST.MISSING_MODALITIES zero-fills as in evaluation and shows the modality as a grey "missing"
panel. Triplets are spread over identities, then cameras. One PNG per triplet (default
OUTPUT_DIR/cam/).
"""

import logging
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import PATTERN_NAMES  # noqa: E402
from data import build_test_loader  # noqa: E402
from engine import defaults, extract_features  # noqa: E402
from engine.cam import block_cams, cam_to_image, logit_score, similarity_score  # noqa: E402
from engine.evaluator import missing_modalities, union_records  # noqa: E402
from modeling import select_pattern  # noqa: E402
from utils.visualize import (  # noqa: E402
    cam_figure,
    display_images,
    model_geometry,
    protocol_junk,
    save_figures,
    spread_indices,
)

logger = logging.getLogger(__name__)


def gallery_targets(cfg, model, query, gallery, protocol, pattern):
    """Each query's best same-id gallery match (highest cosine, protocol junk removed).

    -> (refs (Q, D) float32, NaN rows where there is none; descriptions of the targets).
    """
    records, q_idx, g_idx = union_records(query, gallery)
    feats = F.normalize(
        select_pattern(extract_features(cfg, model, records), pattern).float(), dim=1
    )
    q_feats, g_feats = feats[q_idx], feats[g_idx]
    refs = torch.full_like(q_feats, float("nan"))
    texts = []
    for i, q in enumerate(query):
        ok = torch.tensor([g.pid == q.pid for g in gallery]) & ~protocol_junk(q, gallery, protocol)
        if not ok.any():
            texts.append("target: the feature's own direction (no same-id gallery match)")
            continue
        cos = (g_feats @ q_feats[i]).masked_fill(~ok, -2.0)
        j = int(cos.argmax())
        refs[i] = g_feats[j]
        name = os.path.basename(gallery[j].files[cfg.INPUT.MODALITIES[0]])
        texts.append(
            f"target: cosine to its best same-id gallery match ({name}, camera "
            f"{gallery[j].camid + 1})"
        )
    return refs, texts


def cams(cfg, model, records, score_fn):
    """{modality: (R, H, W) maps on the input images} and the scores (R,) of `records`."""
    device = next(model.parameters()).device
    geometry = model_geometry(model)
    miss = missing_modalities(cfg)
    maps, scores = {m: [None] * len(records) for m in model.modalities}, [None] * len(records)
    loader = build_test_loader(cfg, records, rank=0, world_size=1, device=device)
    try:
        for batch in loader:
            for m in miss:  # as in evaluation: the modality carries no signal
                batch["images"][m] = torch.zeros_like(batch["images"][m])
            per_mod, s = block_cams(model, batch, score_fn)
            for m, cam in per_mod.items():
                img = cam_to_image(cam, *geometry, tuple(cfg.INPUT.SIZE_TEST)).cpu()
                for b, idx in enumerate(batch["index"].tolist()):
                    maps[m][idx] = img[b].numpy()
            for b, idx in enumerate(batch["index"].tolist()):
                scores[idx] = float(s[b])
    finally:
        loader.close()
    return maps, scores


def main(argv=None):
    parser = defaults.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=8, help="number of triplets")
    parser.add_argument(
        "--pattern",
        type=int,
        default=0,
        help="return_pattern 1, 2 or 3 (default TEST.RETURN_PATTERN)",
    )
    parser.add_argument(
        "--split",
        default="query",
        choices=("query", "train"),
        help="query: similarity target; train: classifier-logit target",
    )
    parser.add_argument("--out", default="", help="folder (default OUTPUT_DIR/cam)")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f"--num {args.num}: give at least 1")
    cfg, device, splits, model, pattern = defaults.tool_model(args, args.pattern)
    out = args.out or os.path.join(cfg.OUTPUT_DIR, "cam")
    pool = getattr(splits, args.split)
    if not pool:
        raise SystemExit(f"{splits.name} has no {args.split} triplets to show")
    records = [pool[i] for i in spread_indices(pool, args.num)]
    if args.split == "train":  # train pids are the classifier's classes (relabelled 0..P-1)
        classes = torch.tensor([r.pid for r in records])
        score_fn = logit_score(model, pattern, classes)
        texts = [f"target: classifier logit of its own id (class {r.pid})" for r in records]
    else:
        refs, texts = gallery_targets(cfg, model, records, splits.gallery, splits.protocol, pattern)
        score_fn = similarity_score(pattern, refs)
    maps, scores = cams(cfg, model, records, score_fn)
    miss = missing_modalities(cfg)
    figures = []
    for i, rec in enumerate(records):
        who = f"class {rec.pid}" if args.split == "train" else f"id {rec.pid}"
        title = f"{splits.name} {args.split} triplet {i}: {who}, camera {rec.camid + 1}" + (
            f", scene {rec.sceneid}" if rec.sceneid >= 0 else ""
        )
        legend = [
            texts[i],
            f"score {scores[i]:.3f}; pattern {pattern} "
            f"({PATTERN_NAMES[pattern]}); missing {'+'.join(miss) or 'none'}",
            "Grad-CAM on the patch tokens of the last ViT block",
        ]
        logger.info("%s: %s, score %.4f", title, texts[i], scores[i])
        figures.append(
            cam_figure(display_images(cfg, rec), {m: maps[m][i] for m in maps}, miss, title, legend)
        )
    paths = save_figures(figures, records, out, cfg.INPUT.MODALITIES[0])
    print(f"{len(paths)} Grad-CAM pictures (pattern {pattern}) written to {out}")
    return paths


if __name__ == "__main__":
    defaults.run_cli(main)
