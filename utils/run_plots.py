"""Pictures of groups of runs (the seeds of one config each): learning curves from their
`metrics.json`, and the final mAP per config with its 95 % interval.

matplotlib is an optional dependency of the tools, imported here only when a picture is drawn.
Figures are built without pyplot (no global state, no display) and returned, so their drawn data
can be read back: every line and bar carries a gid "<group>|<what>".
"""

import math

from . import stats as st
from .run_records import eval_curves, loss_curves

PIP_HINT = "the pictures need matplotlib: pip install matplotlib"


class MissingMatplotlib(ImportError):
    """matplotlib is not installed; the message says how to install it."""


def _figure(**kw):
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingMatplotlib(PIP_HINT) from e
    return Figure(**kw)


def _colour(i):
    return f"C{i % 10}"


def _panels(runs_by_group):
    """[(title, {group: [{epoch: value} per run]})]: one panel per loss term (loss_total first),
    then one per (split, pattern) of the mAP evaluations."""
    losses, maps = {}, {}
    for group, runs in runs_by_group.items():
        for records in runs:
            for k, curve in loss_curves(records).items():
                losses.setdefault(k, {}).setdefault(group, []).append(curve)
            for split, by_pattern in eval_curves(records).items():
                for p, curve in by_pattern.items():
                    maps.setdefault((split, p), {}).setdefault(group, []).append(curve)
    order = sorted(losses, key=lambda k: (k != "loss_total", k))
    return [(k, losses[k]) for k in order] + [
        (f"{split} mAP, pattern {p}", maps[(split, p)]) for split, p in sorted(maps)
    ]


def mean_curve(curves):
    """{epoch: mean over the runs} on the epochs every run has."""
    epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    return {e: math.fsum(c[e] for c in curves) / len(curves) for e in epochs}


def learning_curves(runs_by_group, title=""):
    """runs_by_group: {group label: [records of one run (utils.run_records.read_records)]}.
    One panel per loss term and per evaluated (split, pattern) mAP, against epoch: each run thin
    in its group's colour, the group's mean bold. Returns the matplotlib Figure."""
    panels = _panels(runs_by_group)
    if not panels:
        raise ValueError("no training or evaluation records to draw (empty metrics.json files?)")
    groups = list(runs_by_group)
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = _figure(figsize=(3.2 * cols, 2.4 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, by_group) in zip(axes, panels):
        for gi, group in enumerate(groups):
            curves = by_group.get(group, [])
            for ri, c in enumerate(curves):
                # A curve of one point (evaluated only after the last epoch) still shows.
                ax.plot(
                    list(c),
                    list(c.values()),
                    color=_colour(gi),
                    lw=0.8,
                    alpha=0.35,
                    marker="o" if len(c) == 1 else None,
                    ms=3,
                    gid=f"{group}|run{ri}",
                )
            m = mean_curve(curves)
            if m:
                ax.plot(
                    list(m),
                    list(m.values()),
                    color=_colour(gi),
                    lw=2.4,
                    marker="o" if len(m) == 1 else None,
                    ms=5,
                    gid=f"{group}|mean",
                    label=group,
                )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(labelsize=7)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=min(len(groups), 6),
        fontsize=8,
        frameon=False,
    )
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def interval_bars(stats, metric="mAP", title=""):
    """stats: {group: {pattern: {"mean", "ci": (low, high), "values"}}}. Bars of the means per
    return_pattern, one colour per group, the 95 % interval as error bar and each run as a dot.
    Returns the matplotlib Figure."""
    groups = list(stats)
    patterns = sorted({p for g in stats.values() for p in g})
    width = 0.8 / max(1, len(groups))
    fig = _figure(
        figsize=(1.8 + 0.6 * len(patterns) * max(1, len(groups)), 3.0), layout="constrained"
    )
    ax = fig.subplots()
    for gi, group in enumerate(groups):
        xs, means, err, dots = [], [], [[], []], []
        for pi, p in enumerate(patterns):
            s = stats[group].get(p)
            if s is None:
                continue
            x = pi - 0.4 + width * (gi + 0.5)
            lo, hi = s["ci"]
            xs.append(x)
            means.append(s["mean"])
            ok = not (math.isnan(lo) or math.isnan(hi))  # one run: no interval
            err[0].append(s["mean"] - lo if ok else 0.0)
            err[1].append(hi - s["mean"] if ok else 0.0)
            dots += [(x, v) for v in s.get("values", ())]
        bars = ax.bar(
            xs,
            means,
            width * 0.9,
            yerr=err,
            capsize=3,
            color=_colour(gi),
            alpha=0.8,
            label=group,
            error_kw={"lw": 1},
        )
        for b, p in zip(bars, [p for p in patterns if p in stats[group]]):
            b.set_gid(f"{group}|p{p}")
        if dots:
            ax.plot(
                [d[0] for d in dots],
                [d[1] for d in dots],
                "o",
                color="k",
                ms=2.5,
                gid=f"{group}|runs",
            )
    ax.set_xticks(range(len(patterns)), [f"pattern {p}" for p in patterns], fontsize=8)
    # The axis starts near the data, not at 0: a 1-point difference at mAP 80 must be visible.
    ends = [
        v
        for g in stats.values()
        for s in g.values()
        for v in (*s["ci"], *s.get("values", ()), s["mean"])
        if not math.isnan(v)
    ]
    if ends:
        lo, hi = min(ends), max(ends)
        pad = 0.15 * (hi - lo) + 0.5
        ax.set_ylim(max(0.0, lo - pad), hi + pad)
    ax.set_ylabel(f"{metric} (%)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title or f"final {metric}, mean and 95 % interval", fontsize=9)
    return fig


def group_stats(finals, metric="mAP"):
    """finals: {group: [{pattern: metrics} of each finished run]} -> the `stats` of interval_bars
    (mean, sample std, 95 % interval and the values, per pattern every run of the group has)."""
    out = {}
    for group, runs in finals.items():
        if runs:
            patterns = sorted(set.intersection(*(set(r) for r in runs)))
            out[group] = {
                p: {**st.summary(v := [r[p][metric] for r in runs]), "values": v} for p in patterns
            }
    return out


def save(fig, path, dpi=100):
    """Write the figure as PNG; returns the path."""
    fig.savefig(path, dpi=dpi)
    return path


def heatmap(labels, panels, title, metric="mAP"):
    """The any-to-any matrix: one panel per {panel title: rows x columns values}, the query's
    modality sets down (`labels`), the gallery's across, the value in every cell. Returns the
    matplotlib Figure."""
    n = len(panels)
    size = 0.62 * len(labels) + 1.2
    fig = _figure(figsize=(size * n + 1.6, size + 1.5), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False, sharey=True)[0]
    for i, (ax, (name, values)) in enumerate(zip(axes, panels.items())):
        im = ax.imshow(values, vmin=0, vmax=100, cmap="viridis")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.tick_params(axis="y", labelleft=i == 0)
        ax.set_xlabel("gallery modalities")
        if i == 0:
            ax.set_ylabel("query modalities")
        ax.set_title(name)
        for r, row in enumerate(values):
            for c, v in enumerate(row):
                ax.text(
                    c,
                    r,
                    f"{v:.1f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if v > 60 else "white",
                )
    fig.colorbar(im, ax=axes.tolist(), shrink=0.8, label=f"{metric} (%)")
    fig.suptitle(title)
    return fig
