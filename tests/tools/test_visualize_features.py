"""tools/plot_features.py: the t-SNE / similarity panels on constructed features, the tool on a
1-epoch smoke checkpoint, and its message when matplotlib or scikit-learn is missing."""

import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tools import plot_features


def test_feature_panels_slice_ori_per_modality():
    ori = torch.arange(2 * 6, dtype=torch.float32).reshape(2, 6)  # three modalities, C = 2
    fused = torch.ones(2, 4)
    panels = plot_features.feature_panels(
        {"ori": ori, "fused": fused}, ("RGB", "NI", "TI"), 3, miss=("TI",)
    )
    names = [n for n, _ in panels]
    assert names == [
        "RGB (ori[:, 0:2])",
        "NI (ori[:, 2:4])",
        "TI (ori[:, 4:6]), missing",
        "pattern 3: ori+fused (10-d)",
    ]
    torch.testing.assert_close(panels[1][1], ori[:, 2:4])
    torch.testing.assert_close(panels[3][1], torch.cat([ori, fused], dim=1))


def test_pair_similarities():
    f = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    same, diff = plot_features.pair_similarities(f, [7, 7, 8])
    np.testing.assert_allclose(same, [1.0])
    np.testing.assert_allclose(diff, [0.0, 0.0], atol=1e-7)


def test_embedding_figure_one_point_per_sample_and_separation():
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    g = torch.Generator().manual_seed(0)
    pids = np.repeat([3, 5, 9, 11], 6)  # 24 samples of 4 identities
    centres = 4 * torch.randn(4, 16, generator=g)
    clustered = centres[np.searchsorted([3, 5, 9, 11], pids)] + torch.randn(24, 16, generator=g)
    noise = torch.randn(24, 16, generator=g)
    fig, stats = plot_features.embedding_figure(
        [("clustered", clustered), ("noise", noise)], pids, seed=0
    )
    scatters = [ax for ax in fig.axes if ax.collections and not ax.patches]
    assert len(scatters) == 2
    for ax in scatters:
        pts = ax.collections[0]
        assert pts.get_offsets().shape == (24, 2)
        # one colour per identity
        colours = {tuple(c) for c in np.round(pts.get_facecolors(), 4)}
        assert len(colours) == 4
    assert stats[0]["auc"] > 0.99 and stats[0]["same"] > stats[0]["diff"]
    assert 0.3 < stats[1]["auc"] < 0.7  # unrelated features: same-id pairs look like the others


def test_embedding_figure_needs_two_identities():
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    with pytest.raises(SystemExit, match="at least 4 samples of 2 identities"):
        plot_features.embedding_figure([("x", torch.randn(5, 4))], [1] * 5)


def test_plot_features_writes_the_picture(sdtps_args, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    path = plot_features.main([*sdtps_args, "--pattern", "2", "--out", str(tmp_path)])
    assert path == os.path.join(str(tmp_path), "features_pattern2.png")
    with Image.open(path) as im:
        assert im.size[0] > 4 * 200 and im.size[1] > 400  # four panels, two rows
    out = capsys.readouterr().out
    for name in (
        "RGB (ori[:, 0:64])",
        "NI (ori[:, 64:128])",
        "TI (ori[:, 128:192])",
        "pattern 2: fused (192-d)",
    ):
        assert f"{name}: mean cosine same id" in out


def test_plot_features_without_plotting_packages(sdtps_args, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)  # import fails as if missing
    with pytest.raises(SystemExit, match="pip install matplotlib scikit-learn$"):
        plot_features.main([*sdtps_args, "--out", str(tmp_path)])
    assert not os.listdir(tmp_path)
