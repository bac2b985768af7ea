"""The missing-modality suite: full-modality evaluation and the six TEST.MISSING_MODALITIES settings
(RGB, NI, TI, RGB+NI, RGB+TI, NI+TI missing) for every return_pattern, in one table (mAP / Rank-1
per cell, and the averages over the missing settings), printed and written as Markdown and JSON;
with --any-to-any the matrix of every query modality set against every gallery set, with a heat
map.

    python tools/eval_suite.py --config_file configs/RGBNT201/DeMo_SDTPS.yml TEST.WEIGHT model.pth
    python tools/eval_suite.py --config_file X TEST.WEIGHT model.pth --any-to-any
    python tools/eval_suite.py --config_file X --features feats/  # saved query / gallery features

Features are extracted once per setting (7 passes) and every pattern is ranked from them, with the
evaluation's own ranking (engine.evaluator). --features ranks the files of
tools/extract_features.py (one setting, one pattern: those they were extracted with).
Output: --out (default OUTPUT_DIR/eval_suite)/suite.md and suite.json. Several seeds of a config,
with their uncertainty: tools/compare.py.
"""

import json
import os
import statistics
import sys
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import PATTERN_NAMES  # noqa: E402
from data import build_dataset  # noqa: E402
from engine import defaults  # noqa: E402
from engine.evaluator import rank_metrics  # noqa: E402
from engine.modality_suite import any_to_any, missing_suite  # noqa: E402
from utils.feature_files import load_split  # noqa: E402
from utils.run_plots import MissingMatplotlib, heatmap, save  # noqa: E402

AVERAGE = "avg missing"
METRICS = ("mAP", "R1")


def with_opts(cfg, **kv):
    """A frozen copy of cfg with dotted keys replaced, e.g.
    with_opts(cfg, **{"TEST.MISSING_MODALITIES": ("RGB",)})."""
    cfg = cfg.clone()
    cfg.defrost()
    for key, value in kv.items():
        *path, last = key.split(".")
        node = cfg
        for p in path:
            node = node[p]
        node[last] = value
    cfg.freeze()
    return cfg


def add_average(results):
    """{setting: {pattern: metrics}} + the AVERAGE row: the mean over the missing settings."""
    missing = [s for s in results if s != "none"]
    if missing:
        patterns = results[missing[0]]
        results[AVERAGE] = {
            p: {
                k: statistics.fmean(results[s][p][k] for s in missing)
                for k in results[missing[0]][p]
            }
            for p in patterns
        }
    return results


def run_suite(cfg, model, splits):
    """{setting: {pattern: {"mAP", "mINP", "R1", "R5", "R10"}}} plus the AVERAGE row."""
    results, _ = missing_suite(cfg, model, splits)
    for missing, row in results.items():
        print(
            f"missing {missing:>6}: "
            + ", ".join(f"pattern {p} mAP {m['mAP']:.2f} R1 {m['R1']:.2f}" for p, m in row.items())
        )
    return add_average(results)


def set_label(names):
    return "+".join(names)


def any_to_any_report(cfg, model, splits, out, title):
    """The 7 x 7 matrix of query set x gallery set: any_to_any.md, .json and .png (mAP heat map,
    one panel per pattern) under `out`."""
    results, timing = any_to_any(cfg, model, splits)
    sets = list(dict.fromkeys(q for q, _ in results))
    labels = [set_label(s) for s in sets]
    patterns = list(next(iter(results.values())))
    lines = [
        f"### {title}: any-to-any",
        "",
        f"mAP / Rank-1 (%): rows the query's modalities, columns the gallery's; "
        f"{timing['extractions']} extractions of {timing['samples']} samples in "
        f"{timing['extract_s']:.1f} s, {timing['settings']} settings ranked in "
        f"{timing['rank_s']:.1f} s",
        "",
    ]
    for p in patterns:
        lines += [
            f"pattern {p} ({PATTERN_NAMES.get(p, '?')})",
            "",
            "| query \\ gallery | " + " | ".join(labels) + " |",
            "| --- |" + " --- |" * len(labels),
        ]
        for q in sets:
            lines.append(
                f"| {set_label(q)} | " + " | ".join(cell(results[(q, g)][p]) for g in sets) + " |"
            )
        off = [results[(q, g)][p]["mAP"] for q in sets for g in sets if q != g]
        lines += [
            "",
            f"mean mAP of the {len(off)} off-diagonal settings: {statistics.fmean(off):.2f}",
            "",
        ]
    text = "\n".join(lines) + "\n"
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "any_to_any.md"), "w") as f:
        f.write(text)
    payload = {
        "title": title,
        "timing": timing,
        "sets": labels,
        "results": {
            f"{set_label(q)}->{set_label(g)}": {str(p): m for p, m in row.items()}
            for (q, g), row in results.items()
        },
    }
    with open(os.path.join(out, "any_to_any.json"), "w") as f:
        json.dump(payload, f, indent=1)
    panels = {
        f"pattern {p} ({PATTERN_NAMES.get(p, '?')})": [
            [results[(q, g)][p]["mAP"] for g in sets] for q in sets
        ]
        for p in patterns
    }
    print(text)
    try:
        png = save(heatmap(labels, panels, title), os.path.join(out, "any_to_any.png"), dpi=110)
    except MissingMatplotlib as e:  # the tables are written; only the picture needs matplotlib
        print(f"no heat map: {e}")
        return results
    print(f"written to {out}/any_to_any.md, .json and {png}")
    return results


def features_suite(cfg, folder):
    """The suite's one cell of saved features (tools/extract_features.py): query vs gallery."""
    (qf, qi, meta), (gf, gi, _) = load_split(folder, "query"), load_split(folder, "gallery")

    def records(ids):
        return [
            SimpleNamespace(pid=int(p), camid=int(c), sceneid=int(s))
            for p, c, s in zip(ids["pid"], ids["camid"], ids["sceneid"])
        ]

    m = rank_metrics(
        cfg,
        torch.from_numpy(qf),
        torch.from_numpy(gf),
        records(qi),
        records(gi),
        meta["protocol"],
        torch.device("cpu"),
    )
    return {missing_name(meta): {int(meta["pattern"]): m}}, meta


def missing_name(meta):
    """The suite's row name of saved features: their missing modalities ("none", "NI+TI"); files
    written before the names were stored carry DeMo's letters instead."""
    if "missing_modalities" in meta:
        return "+".join(meta["missing_modalities"]) or "none"
    return meta["miss"]


def cell(m):
    """'mAP / R1' of one metrics dict."""
    return " / ".join(f"{m[k]:.2f}" for k in METRICS)


def markdown(results, title):
    """Rows: the missing modalities (TEST.MISSING_MODALITIES; + the average over the missing
    settings); columns: return_patterns; cells: mAP / Rank-1 in percent."""
    patterns = list(next(iter(results.values())))
    head = ["missing"] + [f"pattern {p} ({PATTERN_NAMES.get(p, '?')})" for p in patterns]
    lines = [
        f"### {title}",
        "",
        "mAP / Rank-1 (%)",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    for s, row in results.items():
        lines.append(f"| {s} | " + " | ".join(cell(row[p]) for p in patterns) + " |")
    return "\n".join(lines) + "\n"


def write(out, results, title, extra):
    os.makedirs(out, exist_ok=True)
    text = markdown(results, title)
    with open(os.path.join(out, "suite.md"), "w") as f:
        f.write(text)
    payload = {
        "title": title,
        **extra,
        "results": {s: {str(p): m for p, m in row.items()} for s, row in results.items()},
    }
    with open(os.path.join(out, "suite.json"), "w") as f:
        json.dump(payload, f, indent=1)
    print(text)
    print(f"written to {out}/suite.md and suite.json")


def main(argv=None):
    parser = defaults.argument_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--features",
        default="",
        help="evaluate the query / gallery files of tools/extract_features.py",
    )
    parser.add_argument("--out", default="", help="folder (default OUTPUT_DIR/eval_suite)")
    parser.add_argument(
        "--any-to-any",
        action="store_true",
        help="the query set x gallery set matrix of every non-empty modality set "
        "(7 x 7 for three modalities): table, JSON and a heat-map PNG",
    )
    args = parser.parse_args(argv)
    cfg = defaults.load_cfg_or_exit(args)
    out = args.out or os.path.join(cfg.OUTPUT_DIR, "eval_suite")
    if args.features:
        results, meta = features_suite(cfg, args.features)
        extra = {k: meta[k] for k in ("weight", "dataset", "protocol", "pattern")}
        extra["missing"] = missing_name(meta)
        write(
            out,
            results,
            f"{meta['dataset']}: saved features {args.features}",
            {**extra, "features": args.features},
        )
        return results
    defaults.need_weight(cfg)
    device = defaults.setup(cfg, log_name="suite_log.txt")
    splits = build_dataset(cfg)
    model = defaults.load_model(cfg, device, splits)
    if args.any_to_any:
        title = f"{cfg.DATASETS.NAMES}: {cfg.TEST.WEIGHT}"
        return any_to_any_report(cfg, model, splits, out, title)
    results = run_suite(cfg, model, splits)
    write(
        out,
        results,
        f"{cfg.DATASETS.NAMES}: {cfg.TEST.WEIGHT}",
        {"weight": cfg.TEST.WEIGHT, "config": args.config_file, "protocol": splits.protocol},
    )
    return results


if __name__ == "__main__":
    defaults.run_cli(main)
