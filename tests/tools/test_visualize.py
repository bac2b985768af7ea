"""tools/visualize_tokens.py and tools/visualize_ranks.py on a 1-epoch smoke checkpoint, and the
drawing helpers of utils/visualize.py."""

import os

import numpy as np
import pytest
from PIL import Image

from tools import visualize_ranks, visualize_tokens
from utils import visualize as vis

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_patch_cells_tile_the_image():
    boxes = vis.patch_cells((8, 4), (8, 8), (8, 8), scale=3)
    assert len(boxes) == 32 and boxes[0] == (0, 0, 24, 24) and boxes[-1] == (72, 168, 96, 192)
    # overlapping patches (stride 6 < patch 8): stride-sized cells centred in their windows
    assert vis.patch_cells((2, 2), (8, 8), (6, 6))[3] == (7, 7, 13, 13)


def test_patch_weights_sum_over_aggregated_tokens():
    w = vis.patch_weights([3, 0], np.array([[0.25, 0.75], [0.5, 0.5]]), 5)
    np.testing.assert_allclose(w, [1.25, 0, 0, 0.75, 0])


def test_kept_patches_bright_dropped_dimmed():
    img = Image.new("RGB", (32, 64), (200, 200, 200))
    boxes = vis.patch_cells((8, 4), (8, 8), (8, 8), scale=2)
    kept = np.arange(32) % 3 == 0
    pic = np.asarray(vis.selection_panel(img, kept, boxes, 2), dtype=float).mean(axis=2)
    inner = [pic[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].mean() for x0, y0, x1, y1 in boxes]
    assert min(np.array(inner)[kept]) == pytest.approx(200, abs=1)
    assert max(np.array(inner)[~kept]) == pytest.approx(200 * vis.DIM, abs=1)


def _records(spec):
    """[(pid, camid), ...] -> Records."""
    from data import Record

    return [Record({"RGB": f"{i}.jpg"}, pid, cam, key=str(i)) for i, (pid, cam) in enumerate(spec)]


def test_spread_indices_identities_first_then_cameras():
    # as a sorted query list comes: each identity's images together, one camera after the other
    recs = _records([(1, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 1), (3, 1), (3, 1)])
    picks = vis.spread_indices(recs, 5)
    # one per identity first (cameras balanced: 3 has camera 1 only), then a second camera of 1, 2
    assert [recs[i].pid for i in picks] == [1, 2, 3, 1, 2]
    assert [recs[i].camid for i in picks] == [0, 1, 1, 1, 0]
    assert picks == vis.spread_indices(recs, 5)  # deterministic
    assert sorted(vis.spread_indices(recs, 20)) == list(range(8))  # all of them, each once
    assert vis.spread_indices(recs, 0) == [] and vis.spread_indices([], 3) == []


def test_protocol_junk():
    from data import Record

    g = [Record({}, 1, 0, 5), Record({}, 1, 1, 5), Record({}, 2, 0, 5), Record({}, 1, 0, 6)]
    q = Record({}, 1, 0, 5)
    assert vis.protocol_junk(q, g, "market").tolist() == [True, False, False, True]
    assert vis.protocol_junk(q, g, "scene").tolist() == [True, True, False, False]


def _pids(paths):
    """Raw ids from the picture names (<i>_<RGBNT201 stem: id_cam...>.png)."""
    return [os.path.basename(p).split("_")[1] for p in paths]


def test_visualize_tokens_writes_pictures(sdtps_args, tmp_path):
    paths = visualize_tokens.main([*sdtps_args, "--num", "2", "--out", str(tmp_path)])
    assert len(paths) == 2 and sorted(os.listdir(tmp_path)) == sorted(map(os.path.basename, paths))
    assert len(set(_pids(paths))) == 2  # two identities, not the first two images of one
    with Image.open(paths[0]) as im:
        w, h = im.size
        pic = np.asarray(im.convert("RGB"), dtype=float)
    assert w >= 3 * 96 and h >= 2 * 192  # three modalities, two rows, 64x32 upscaled to 192x96
    # the RGB selection panel (first column, below the 20 px title and 34 px header): kept
    # cells are outlined in gold, dropped ones dimmed
    panel = pic[54 : 54 + 192, 16 : 16 + 96]
    gold = (np.abs(panel - vis.KEPT_OUTLINE).sum(axis=2) < 1).sum()
    assert gold > 0


def test_visualize_tokens_demo_config_has_no_selection(synthetic_root, tmp_path):
    cfg = os.path.join(REPO, "configs", "_smoke", "DeMo.yml")
    with pytest.raises(SystemExit, match="no token selection"):
        visualize_tokens.main(
            ["--config_file", cfg, "DATASETS.ROOT_DIR", synthetic_root, "TEST.WEIGHT", "unused.pth"]
        )


def _border_runs(row):
    """Runs of exactly-border-coloured pixels along one image row -> list of colours."""
    runs, prev = [], None
    for px in map(tuple, row):
        c = px if px in (vis.BLUE, vis.GREEN, vis.RED) else None
        if c is not None and c != prev:
            runs.append(c)
        prev = c
    return runs


def test_rank_figure_borders():
    trip = {m: Image.new("RGB", (32, 64), (128, 128, 128)) for m in ("RGB", "NI", "TI")}
    gallery = [(trip, f"#{i + 1}", i % 2 == 0) for i in range(10)]
    fig, boxes = vis.rank_figure((trip, "query"), gallery, list(trip), "t")
    assert len(boxes) == 11
    pic = fig.load()
    colours = [pic[x0 + 1, (y0 + y1) // 2] for x0, y0, x1, y1 in boxes]
    assert colours == [vis.BLUE] + [vis.GREEN if i % 2 == 0 else vis.RED for i in range(10)]


@pytest.mark.parametrize("config,pattern", [("DeMo_SDTPS.yml", "3"), ("DeMo.yml", "2")])
def test_visualize_ranks_writes_eleven_bordered_panels(
    smoke_checkpoint, tmp_path, capsys, config, pattern
):
    args = smoke_checkpoint(config)
    paths = visualize_ranks.main(
        [*args, "--num", "2", "--pattern", pattern, "--out", str(tmp_path)]
    )
    assert len(paths) == 2 and len(set(_pids(paths))) == 2
    # the log lists each query's ten gallery items with their distances, in ranked order
    dists = [
        float(line.split(" d ")[1].split()[0])
        for line in capsys.readouterr().out.splitlines()
        if line.lstrip().startswith("#") and " d " in line
    ]
    assert len(dists) == 20
    assert dists[:10] == sorted(dists[:10]) and dists[10:] == sorted(dists[10:])
    with Image.open(paths[0]) as im:
        pic = np.asarray(im.convert("RGB"))
    runs = _border_runs(pic[pic.shape[0] // 2])
    # each panel's border is crossed twice (left and right edges)
    assert len(runs) == 22 and runs[:2] == [vis.BLUE, vis.BLUE]
    assert set(runs[2:]) <= {vis.GREEN, vis.RED}


def test_ranked_returns_the_evaluation_distances(smoke_cfg):
    import torch

    from data import Record

    cfg = smoke_cfg("TEST.FEAT_NORM", "False")
    gallery = [Record({}, 1, 0), Record({}, 2, 1), Record({}, 1, 1), Record({}, 3, 0)]
    g = torch.tensor([[0.0, 0.0], [3.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    idx, dist = visualize_ranks.ranked(
        cfg, torch.tensor([0.0, 0.0]), g, Record({}, 1, 0), gallery, "market"
    )
    # gallery 0 (same id, same camera) is removed; squared Euclidean distances, ascending
    assert idx == [2, 3, 1] and dist == pytest.approx([2.0, 4.0, 9.0])
    assert visualize_ranks.caption(gallery[2], 1, dist[0]).split("\n")[2] == "d 2.000"


def test_vis_tokens_hook_writes_tensorboard_images(sdtps_args, tmp_path, smoke_cfg):
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from data import build_dataset
    from engine import evaluate
    from engine.defaults import load_model
    from utils.events import EventWriter

    cfg = smoke_cfg(
        "DATASETS.ROOT_DIR",
        sdtps_args[3],
        "TEST.WEIGHT",
        sdtps_args[5],
        "OUTPUT_DIR",
        str(tmp_path),
        "TEST.VIS_TOKENS",
        "True",
        config="DeMo_SDTPS.yml",
    )
    splits = build_dataset(cfg)
    model = load_model(cfg, torch.device("cpu"), splits)
    evaluate(cfg, model, splits, step=3)  # no writer: nothing is written
    assert os.listdir(tmp_path) == []
    writer = EventWriter(str(tmp_path))
    evaluate(cfg, model, splits, writer=writer, step=3)
    writer.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    acc.Reload()
    assert "tokens/sample0" in acc.Tags()["images"]
    assert acc.Images("tokens/sample0")[0].step == 3
