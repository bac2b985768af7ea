"""The statistics of a multi-seed study (engine/compare.py) and its report: per config and
return_pattern mAP / R1 / mINP as mean +- sample std with a 95 % Student-t interval; for each pair
of configs of one dataset the difference of means with its interval and the t-test that fits how
the runs were drawn; Markdown, JSON, a line for a paper table, and the pictures.

Which test: a seed fixes the batches (sampler and augmentation draws: data/samplers.py,
data/transforms.py) and the initial weights (the model is built right after seeding). When two
configs differ only in keys that change neither (NEUTRAL below: learning rates, loss weights,
schedule, evaluation...), seed s gives both the same data order and the same initialisation; the
runs of one seed are pairs and the per-seed differences cancel that seed's luck: paired t-test,
n - 1 degrees of freedom. Otherwise seed s means different randomness in each config, matching
runs by seed number pairs nothing, and the two samples are independent: Welch's t-test (unequal
variances, Welch-Satterthwaite degrees of freedom). If such runs still share some randomness (the
data order, when only the model differs) and so correlate positively, Welch's test overstates the
variance of the difference: it is conservative, never too optimistic.
"""

import json
import math
import os

from config import PATTERN_NAMES
from utils import stats
from utils.run_plots import interval_bars, learning_curves, save
from utils.run_records import read_records

from .compare import config_diff

METRICS = ("mAP", "R1", "mINP")
SELECTIONS = {
    "final": "final model (model_final.pth) on test",
    "best": "model selected on the validation split (model_best.pth) on test",
}

# Keys that change neither the batches a seed draws nor the initial weights it builds (SOLVER.SEED
# and OUTPUT_DIR differ by construction). Every other key, and any key added later, breaks the
# pairing: Welch's test, the conservative choice, is the default.
NEUTRAL = {
    *(
        f"SOLVER.{k}"
        for k in (
            "OPTIMIZER_NAME",
            "MAX_EPOCHS",
            "BASE_LR",
            "BACKBONE_LR",
            "BIAS_LR_FACTOR",
            "MOMENTUM",
            "WEIGHT_DECAY",
            "WEIGHT_DECAY_BIAS",
            "MARGIN",
            "WARMUP_EPOCHS",
            "WARMUP_FACTOR",
            "MIN_LR_FACTOR",
            "LR_NOISE",
            "AMP",
            "COMPILE",
            "COMPILE_MODE",
            "DDP_BUCKET_MB",
            "DDP_GRAD_DTYPE",
            "GRAD_CLIP",
            "CHECKPOINT_PERIOD",
            "KEEP_CHECKPOINTS",
            "LOG_PERIOD",
            "EVAL_PERIOD",
            "SEED",
        )
    ),
    # Scalars of the forward and the losses, dropout rates, how SDTPS selects in training (no
    # parameters; its draws come from the device generator, after the model is built), the device.
    *(
        f"MODEL.{k}"
        for k in (
            "DEVICE",
            "SDPA_BACKEND",
            "DROP_PATH",
            "DROP_OUT",
            "ATT_DROP_RATE",
            "SIE_COE",
            "ID_LOSS_WEIGHT",
            "TRIPLET_LOSS_WEIGHT",
            "LABEL_SMOOTH",
            "NO_MARGIN",
            "SDTPS_BETA",
            "SDTPS_USE_GUMBEL",
            "SDTPS_GUMBEL_MODE",
            "SDTPS_GUMBEL_TAU",
            "SDTPS_SCORE_GRAD",
            "SDTPS_LOSS_WEIGHT",
        )
    ),
    "INPUT.SIZE_TEST",
    # Modality dropout draws its own column of the per-sample stream (data/transforms.py): the
    # other augmentations and the order stay those of the same seed without it.
    "INPUT.MODALITY_DROPOUT",
    "INPUT.MODALITY_DROPOUT_SETS",
    "INPUT.PIXEL_MEAN",
    "INPUT.PIXEL_STD",
    "DATALOADER.NUM_WORKERS",
    "DATALOADER.PREFETCH_FACTOR",
    "DATALOADER.PIPELINE",
    "OUTPUT_DIR",
}


def _neutral(key):
    return key in NEUTRAL or key.startswith("TEST.")


def _keys(keys, limit=4):
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def pairing(cfg_a, cfg_b):
    """(paired, why): whether runs of the same seed of the two configs are pairs, and the reason
    in one sentence."""
    diff = [k for k, _, _ in config_diff(cfg_a, cfg_b, ignore={"OUTPUT_DIR", "SOLVER.SEED"})]
    breaking = [k for k in diff if not _neutral(k)]
    if breaking:
        return False, (
            f"Welch's t-test: the configs differ in {_keys(breaking)}, which change "
            "the batches a seed draws or the initial weights it builds, so the runs "
            "of one seed are not pairs and the two samples are treated as independent"
        )
    what = f"differ only in {_keys(diff)}" if diff else "are identical"
    return True, (
        f"paired t-test on the per-seed differences: the configs {what}, which change "
        "neither the data order nor the initialisation, so both runs of a seed see the "
        "same batches from the same initial weights"
    )


def _results(run, selection):
    return run.final if selection == "final" else run.best


def summarize(study, selection):
    """{entry label: {pattern: {metric: {"n", "mean", "std", "ci", "values", "seeds"}}}} of the
    runs that have results."""
    out = {}
    for e in study.entries:
        runs = [r for r in study.runs if r.entry is e and _results(r, selection)]
        if not runs:
            continue
        patterns = sorted(set.intersection(*(set(_results(r, selection)) for r in runs)))
        out[e.label] = {
            p: {
                m: {
                    **stats.summary([_results(r, selection)[p][m] for r in runs]),
                    "values": [_results(r, selection)[p][m] for r in runs],
                    "seeds": [r.seed for r in runs],
                }
                for m in METRICS
            }
            for p in patterns
        }
    return out


def compare_pairs(study, summary):
    """[{"a", "b", "paired", "why", "rows": [{"pattern", "metric", **test}]}] for each pair of
    configs of one dataset, the difference being b - a (b given after a)."""
    out = []
    entries = [e for e in study.entries if e.label in summary]
    for i, a in enumerate(entries):
        for b in entries[i + 1 :]:
            if a.dataset != b.dataset:
                continue
            paired, why = pairing(a.cfg, b.cfg)
            rows = []
            for p in sorted(set(summary[a.label]) & set(summary[b.label])):
                for m in METRICS:
                    sa, sb = summary[a.label][p][m], summary[b.label][p][m]
                    rows.append({"pattern": p, "metric": m, **_test(sa, sb, paired)})
            out.append({"a": a.label, "b": b.label, "paired": paired, "why": why, "rows": rows})
    return out


def _test(sa, sb, paired):
    if paired:
        common = [s for s in sa["seeds"] if s in sb["seeds"]]
        x = [sa["values"][sa["seeds"].index(s)] for s in common]
        y = [sb["values"][sb["seeds"].index(s)] for s in common]
        if len(common) < 2:
            return {"test": "paired", "skipped": f"{len(common)} common seed(s); 2 needed"}
        return stats.paired(x, y)
    if min(len(sa["values"]), len(sb["values"])) < 2:
        return {"test": "welch", "skipped": "fewer than 2 runs in a config"}
    return stats.welch(sa["values"], sb["values"])


def primary_pattern(entry, patterns):
    """The config's TEST.RETURN_PATTERN when it was evaluated, else its highest pattern."""
    p = entry.cfg.TEST.RETURN_PATTERN
    return p if p in patterns else max(patterns)


def paste_line(study, summary, metric="mAP"):
    """'DeMo 79.0 ± 1.2 | DeMo_SDTPS 75.2 ± 2.1 (n=5)': mean ± sample std of `metric` of each
    config's TEST.RETURN_PATTERN."""
    cells, ns = [], []
    for e in study.entries:
        if e.label not in summary:
            continue
        s = summary[e.label][primary_pattern(e, summary[e.label])][metric]
        std = "n/a" if math.isnan(s["std"]) else f"{s['std']:.1f}"
        cells.append(f"{e.label} {s['mean']:.1f} ± {std}")
        ns.append(s["n"])
    if len(set(ns)) <= 1:
        return " | ".join(cells) + (f" (n={ns[0]})" if ns else "")
    return " | ".join(f"{c} (n={n})" for c, n in zip(cells, ns))


def build(study, command=""):
    """The whole report as a JSON-able dict (also what compare.md is written from)."""
    selections = ["final"] + (["best"] if any(e.has_val for e in study.entries) else [])
    payload = {
        "study": study.out,
        "command": command,
        "seeds": study.seeds,
        "overrides": study.opts,
        "configs": [
            {
                "label": e.label,
                "file": e.file,
                "dataset": e.dataset,
                "folder": e.folder,
                "return_pattern": e.cfg.TEST.RETURN_PATTERN,
                "validation": e.has_val,
            }
            for e in study.entries
        ],
        "runs": [
            {
                "config": r.entry.label,
                "seed": r.seed,
                "folder": r.folder,
                "action": r.action or ("failed" if r.error else ""),
                "error": r.error,
                "final": r.final,
                "best": r.best,
                "best_epoch": r.best_epoch,
                "epochs": r.cfg.SOLVER.MAX_EPOCHS,
            }
            for r in study.runs
        ],
    }
    for sel in selections:
        summary = summarize(study, sel)
        payload[sel] = {
            "summary": summary,
            "comparisons": compare_pairs(study, summary),
            "paste": paste_line(study, summary) if summary else "",
        }
    return payload


def _num(v, fmt=".2f"):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _cell(s):
    lo, hi = s["ci"]
    return f"{_num(s['mean'])} ± {_num(s['std'])} [{_num(lo)}, {_num(hi)}]"


def _p(p):
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def markdown(payload):
    labels = [c["label"] for c in payload["configs"]]
    lines = [
        f"# Comparison of {', '.join(labels)}: seeds {' '.join(map(str, payload['seeds']))}",
        "",
    ]
    for sel in SELECTIONS:
        if sel not in payload:
            continue
        part = payload[sel]
        lines += [f"## {SELECTIONS[sel][0].upper()}{SELECTIONS[sel][1:]}", ""]
        if not part["summary"]:
            lines += ["No finished runs.", ""]
            continue
        lines += [
            "For a paper table (mAP of each config's TEST.RETURN_PATTERN, mean ± sample "
            "std over seeds):",
            "",
            f"    {part['paste']}",
            "",
            "| config | pattern | n | " + " | ".join(METRICS) + " |",
            "| --- | --- | --- |" + " --- |" * len(METRICS),
        ]
        for label, by_p in part["summary"].items():
            for p, ms in by_p.items():
                n = ms[METRICS[0]]["n"]
                lines.append(
                    f"| {label} | {p} ({PATTERN_NAMES.get(p, '?')}) | {n} | "
                    + " | ".join(_cell(ms[m]) for m in METRICS)
                    + " |"
                )
        lines.append("")
        for c in part["comparisons"]:
            lines += [
                f"### {c['b']} − {c['a']}",
                "",
                f"Test: {c['why']}.",
                "",
                "| pattern | metric | difference [95 % interval] | t (df) | p |",
                "| --- | --- | --- | --- | --- |",
            ]
            for r in c["rows"]:
                if "skipped" in r:
                    lines.append(f"| {r['pattern']} | {r['metric']} | n/a | n/a | {r['skipped']} |")
                    continue
                lo, hi = r["ci"]
                lines.append(
                    f"| {r['pattern']} | {r['metric']} | {r['diff']:+.2f} "
                    f"[{lo:+.2f}, {hi:+.2f}] | {_num(r['t'])} ({_num(r['df'], '.1f')}) "
                    f"| {_p(r['p'])} |"
                )
            lines.append("")
    lines += [
        "## Runs",
        "",
        "| config | seed | this invocation | final mAP | best epoch | folder |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    primary = {c["label"]: c["return_pattern"] for c in payload["configs"]}
    for r in payload["runs"]:
        p = primary[r["config"]]
        final = r["final"] or {}
        m = final.get(p) or (final[max(final)] if final else None)
        lines.append(
            f"| {r['config']} | {r['seed']} | {r['action'] or 'not run'}"
            f"{': ' + r['error'] if r['error'] else ''} | "
            f"{_num(m['mAP']) if m else 'n/a'} | {r['best_epoch'] or ''} | "
            f"{r['folder']} |"
        )
    lines += [
        "",
        "How to read this: `±` is the sample standard deviation over seeds (ddof=1); "
        "`[a, b]` the 95 % interval of the mean (Student t, n − 1 degrees of freedom). "
        "Differences are of means, with their 95 % interval and the two-sided p-value of "
        "the test named above (docs/ACCURACY.md says which test applies when). Many rows "
        "are tested at once and nothing is corrected for it: where two configs do not "
        "differ, about one row in twenty still shows p < 0.05.",
        "",
    ]
    return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def write(payload, out):
    """OUT/compare.md and OUT/compare.json; returns their paths."""
    os.makedirs(out, exist_ok=True)
    md, js = os.path.join(out, "compare.md"), os.path.join(out, "compare.json")
    with open(md, "w") as f:
        f.write(markdown(payload))
    with open(js, "w") as f:
        json.dump(_jsonable(payload), f, indent=1, allow_nan=False)
    return md, js


def curves_figure(study):
    """Learning curves of every run of the study that has records (None if none has)."""
    groups = {}
    for r in study.runs:
        records = read_records(r.folder)
        if records:
            groups.setdefault(r.entry.label, []).append(records)
    if not groups:
        return None
    return learning_curves(groups, title=f"{os.path.basename(study.out)}: every run, the mean bold")


def bars_figure(payload, selection):
    """Test mAP per config and pattern with its 95 % interval (None without results)."""
    summary = payload.get(selection, {}).get("summary")
    if not summary:
        return None
    bars = {g: {p: ms["mAP"] for p, ms in by_p.items()} for g, by_p in summary.items()}
    return interval_bars(bars, title=f"{selection} model: test mAP, mean and 95 % interval")


def pictures(study, payload, out):
    """OUT/compare_curves.png (every run's learning curves) and OUT/compare_map[_best].png (mAP
    per config and pattern with its 95 % interval); returns the paths. Raises
    utils.run_plots.MissingMatplotlib without matplotlib."""
    figures = [
        (curves_figure(study), "compare_curves.png"),
        (bars_figure(payload, "final"), "compare_map.png"),
        (bars_figure(payload, "best"), "compare_map_best.png"),
    ]
    return [save(fig, os.path.join(out, name)) for fig, name in figures if fig is not None]
