"""Feature maps of a test split: t-SNE per modality and after fusion, with same-id / other-id
cosine similarities.

    python tools/plot_features.py --config_file configs/RGBNT201/DeMo_SDTPS.yml \
        TEST.WEIGHT output/RGBNT201/DeMo_SDTPS/model_final.pth [--ids 20] [--pattern 2] \
        [--split test|train] [--out DIR]

Features are the evaluation's (engine.extract_features; TEST.MISSING_MODALITIES zero-fills), of
every triplet of the first `--ids` identities of the split (test: query and gallery, each triplet
once). One panel per modality's own feature (its C-wide slice of `ori`, the concatenation of the
modalities' class tokens) and one for the return_pattern's feature (default TEST.RETURN_PATTERN):
top, a 2-D t-SNE of the L2-normalised features, one colour per identity; bottom, histograms of the
cosine similarity of same-identity and different-identity pairs, with the ROC AUC of telling them
apart.
Writes OUT/features_pattern<p>.png (default OUTPUT_DIR/features/). Needs matplotlib and
scikit-learn (requirements-tools.txt).
"""

import logging
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import PATTERN_NAMES  # noqa: E402
from engine import defaults, extract_features  # noqa: E402
from engine.evaluator import missing_modalities, union_records  # noqa: E402
from modeling import select_pattern  # noqa: E402

logger = logging.getLogger(__name__)

INSTALL = "pip install matplotlib scikit-learn"
# Up to this many samples the exact t-SNE is the faster one (2 CPU cores, scikit-learn 1.9:
# 136 samples 0.6 s vs 19 s for Barnes-Hut; 1,000 samples 22 s vs 55 s).
EXACT_TSNE = 1000


def plotting():
    """(matplotlib Figure class, sklearn TSNE, sklearn roc_auc_score); exits with one line naming
    the install command when either package is missing."""
    try:
        from matplotlib.figure import Figure
        from sklearn.manifold import TSNE
        from sklearn.metrics import roc_auc_score
    except ImportError as e:
        raise SystemExit(
            f"tools/plot_features.py needs matplotlib and scikit-learn ({e.name} is "
            f"missing): {INSTALL}"
        ) from None
    return Figure, TSNE, roc_auc_score


def feature_panels(feats, modalities, pattern, miss=()):
    """Eval outputs {"ori": (N, M C), "fused": ...} -> [(title, (N, D) features)]: each
    modality's C-wide slice of ori (INPUT.MODALITIES order), then the return_pattern's feature."""
    ori = feats["ori"]
    c = ori.shape[1] // len(modalities)
    panels = [
        (
            f"{m} (ori[:, {i * c}:{(i + 1) * c}])" + (", missing" if m in miss else ""),
            ori[:, i * c : (i + 1) * c],
        )
        for i, m in enumerate(modalities)
    ]
    f = select_pattern(feats, pattern)
    panels.append((f"pattern {pattern}: {PATTERN_NAMES[pattern]} ({f.shape[1]}-d)", f))
    return panels


def pair_similarities(feats, pids):
    """(N, D) features, (N,) ids -> cosine similarities of the same-id and the different-id
    pairs i < j (two 1-D arrays)."""
    f = F.normalize(torch.as_tensor(feats).float(), dim=1)
    sim = f @ f.T
    i, j = torch.triu_indices(len(f), len(f), offset=1)
    same = torch.as_tensor(pids)[i] == torch.as_tensor(pids)[j]
    values = sim[i, j]
    return values[same].numpy(), values[~same].numpy()


def embedding_figure(panels, pids, seed=0, title=""):
    """Panels [(title, (N, D))] and ids (N,) -> (matplotlib Figure, per-panel stats
    [{"same", "diff", "auc"}]): a t-SNE scatter (one point per sample, one colour per id) above a
    histogram of same-id / different-id cosine similarities, per panel."""
    Figure, TSNE, roc_auc_score = plotting()
    pids = np.asarray(pids)
    ids = sorted(set(pids.tolist()))
    if len(ids) < 2 or len(pids) < 4:
        raise SystemExit(
            f"{len(pids)} samples of {len(ids)} identities: a map needs at least "
            "4 samples of 2 identities (raise --ids)"
        )
    palette = _palette(len(ids))
    colours = palette[np.searchsorted(ids, pids)]
    n = len(panels)
    fig = Figure(figsize=(3.6 * n, 7.0), dpi=80, layout="constrained")
    grid = fig.add_gridspec(2, n, height_ratios=(2.2, 1))
    stats = []
    # t-SNE needs perplexity < N; 30 (its default) for sets of 90 samples and more.
    perplexity = min(30.0, (len(pids) - 1) / 3)
    for k, (name, feats) in enumerate(panels):
        x = F.normalize(torch.as_tensor(feats).float(), dim=1).numpy()
        xy = TSNE(
            n_components=2,
            perplexity=perplexity,
            init="pca",
            random_state=seed,
            method="exact" if len(x) <= EXACT_TSNE else "barnes_hut",
        ).fit_transform(x)
        ax = fig.add_subplot(grid[0, k])
        ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=14, linewidths=0)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        same, diff = pair_similarities(feats, pids)
        labels = np.r_[np.ones(len(same)), np.zeros(len(diff))]
        auc = float(roc_auc_score(labels, np.r_[same, diff])) if len(same) else float("nan")
        stats.append(
            {
                "same": float(same.mean()) if len(same) else float("nan"),
                "diff": float(diff.mean()),
                "auc": auc,
            }
        )
        hx = fig.add_subplot(grid[1, k])
        bins = np.linspace(min(same.min(initial=1), diff.min()), 1, 41)
        hx.hist(diff, bins=bins, density=True, alpha=0.6, color="tab:red", label="different id")
        hx.hist(same, bins=bins, density=True, alpha=0.6, color="tab:green", label="same id")
        hx.set_xlabel("cosine similarity", fontsize=9)
        hx.set_yticks([])
        hx.set_title(
            f"mean cosine: same id {stats[-1]['same']:.2f}, other "
            f"{stats[-1]['diff']:.2f}; AUC {auc:.3f}",
            fontsize=9,
        )
        if k == 0:
            hx.legend(fontsize=8, loc="upper left")
    fig.suptitle(
        title
        + (
            f"\n{len(pids)} samples of {len(ids)} identities, one colour per "
            "identity; t-SNE of L2-normalised features"
        ),
        fontsize=11,
    )
    return fig, stats


def _palette(n):
    """n distinguishable RGB colours (N, 3) in [0, 1]: tab20's, then evenly spaced hues."""
    from matplotlib import colormaps

    if n <= 20:
        return np.asarray(colormaps["tab20"].colors)[:n]
    return colormaps["hsv"](np.linspace(0, 1, n, endpoint=False))[:, :3]


def split_records(splits, split):
    """The triplets of a split, each once: test = the union of query and gallery."""
    if split == "train":
        return list(splits.train)
    return union_records(splits.query, splits.gallery)[0]


def main(argv=None):
    parser = defaults.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=20, help="number of identities")
    parser.add_argument(
        "--pattern",
        type=int,
        default=0,
        help="return_pattern 1, 2 or 3 (default TEST.RETURN_PATTERN)",
    )
    parser.add_argument("--split", default="test", choices=("test", "train"))
    parser.add_argument("--out", default="", help="folder (default OUTPUT_DIR/features)")
    args = parser.parse_args(argv)
    plotting()  # before the minutes of extraction
    if args.ids < 2:
        raise SystemExit(f"--ids {args.ids}: a map needs at least 2 identities")
    cfg, device, splits, model, pattern = defaults.tool_model(args, args.pattern)
    out = args.out or os.path.join(cfg.OUTPUT_DIR, "features")
    records = split_records(splits, args.split)
    ids = sorted({r.pid for r in records})[: args.ids]
    records = [r for r in records if r.pid in set(ids)]
    feats = extract_features(cfg, model, records)
    pids = [r.pid for r in records]
    panels = feature_panels(feats, cfg.INPUT.MODALITIES, pattern, missing_modalities(cfg))
    title = (
        f"{splits.name} {args.split}, {os.path.basename(cfg.TEST.WEIGHT)}, "
        f"missing {'+'.join(missing_modalities(cfg)) or 'none'}"
    )
    fig, stats = embedding_figure(panels, pids, cfg.SOLVER.SEED, title)
    for (name, _), s in zip(panels, stats):
        logger.info(
            "%s: mean cosine same id %.3f, different id %.3f, AUC %.4f",
            name,
            s["same"],
            s["diff"],
            s["auc"],
        )
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"features_pattern{pattern}.png")
    fig.savefig(path)
    print(f"feature map of {len(records)} triplets ({len(ids)} ids, pattern {pattern}) -> {path}")
    return path


if __name__ == "__main__":
    defaults.run_cli(main)
