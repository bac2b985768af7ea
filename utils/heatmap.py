"""The any-to-any matrix as a heat map: one panel per return_pattern, query sets down, gallery
sets across, the value in every cell. matplotlib is an optional dependency of the tools."""

import os


def require_matplotlib():
    """matplotlib with a file-only backend, or SystemExit with the install line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("this picture needs matplotlib: pip install matplotlib") from None
    return plt


def write_heatmap(path, labels, panels, title, metric="mAP"):
    """labels: the modality-set names of the rows (query) and columns (gallery); panels:
    {panel title: 2-D list of values (rows x columns)}. Writes a PNG at `path`."""
    plt = require_matplotlib()
    n = len(panels)
    size = 0.62 * len(labels) + 1.2
    fig, axes = plt.subplots(
        1, n, figsize=(size * n + 1.6, size + 1.0), squeeze=False, sharey=True, layout="constrained"
    )
    for i, (ax, (name, values)) in enumerate(zip(axes[0], panels.items())):
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
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label=f"{metric} (%)")
    fig.suptitle(title)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
