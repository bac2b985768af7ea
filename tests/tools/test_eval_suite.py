"""tools/eval_suite.py on a 1-epoch smoke checkpoint: the table's rows (7 settings + average)
and columns (return_patterns), its Markdown and JSON files, and the seed statistics."""

import json

import pytest

from tools import eval_suite

ROWS = ["none", "RGB", "NI", "TI", "RGB+NI", "RGB+TI", "NI+TI", eval_suite.AVERAGE]


def test_suite_table(sdtps_args, tmp_path):
    args = sdtps_args
    patterns = [1, 2, 3]
    res = eval_suite.main([*args, "--out", str(tmp_path)])
    assert list(res) == ROWS and all(list(row) == patterns for row in res.values())
    avg = sum(res[s][1]["mAP"] for s in ROWS[1:7]) / 6
    assert res[eval_suite.AVERAGE][1]["mAP"] == pytest.approx(avg)
    table = (tmp_path / "suite.md").read_text().splitlines()
    rows = [line for line in table if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 8 and all(r.count("|") == 2 + len(patterns) for r in rows)
    assert [r.split("|")[1].strip() for r in rows[1:]] == ROWS
    assert " / " in rows[1]  # mAP / Rank-1 per cell
    saved = json.loads((tmp_path / "suite.json").read_text())["results"]
    assert saved["RGB+TI"]["2"]["R1"] == pytest.approx(res["RGB+TI"][2]["R1"])


def test_any_to_any_matrix_diagonal_equals_missing_modalities(sdtps_args, tmp_path):
    """The 7 x 7 matrix from 7 extractions: its diagonal is TEST.MISSING_MODALITIES's setting, an
    off-diagonal cell the evaluation with TEST.QUERY_MODALITIES / GALLERY_MODALITIES."""
    from config import load_config
    from data import build_dataset
    from engine import evaluate
    from engine.defaults import load_model

    res = eval_suite.main([*sdtps_args, "--any-to-any", "--out", str(tmp_path)])
    assert len(res) == 49
    cfg_file, opts = sdtps_args[1], sdtps_args[2:]
    checks = [
        (("NI", "TI"), ("NI", "TI"), ["TEST.MISSING_MODALITIES", ("RGB",)]),
        (("RGB",), ("RGB", "NI", "TI"), ["TEST.QUERY_MODALITIES", ("RGB",)]),
        (
            ("NI", "TI"),
            ("TI",),
            ["TEST.QUERY_MODALITIES", ("NI", "TI"), "TEST.GALLERY_MODALITIES", ("TI",)],
        ),
    ]
    for q, g, extra in checks:
        cfg = load_config(cfg_file, [*opts, *extra])
        splits = build_dataset(cfg)
        want = evaluate(cfg, load_model(cfg, eval_suite.torch.device("cpu"), splits), splits)
        for p in want:
            assert res[(q, g)][p] == pytest.approx(want[p], abs=1e-6), (q, g, p)
    saved = json.loads((tmp_path / "any_to_any.json").read_text())
    assert saved["timing"]["extractions"] == 7 and len(saved["results"]) == 49
    assert "NI+TI->TI" in saved["results"]
    table = (tmp_path / "any_to_any.md").read_text()
    assert "| query \\ gallery | RGB+NI+TI | RGB+NI | RGB+TI | NI+TI | RGB | NI | TI |" in table
    assert (tmp_path / "any_to_any.png").stat().st_size > 10_000


def test_run_folder_in_demo_names_evaluates_as_today(sdtps_args, tmp_path, old_names):
    """A run folder written before the renames: its config.yaml and the cfg stored in its
    checkpoint use DeMo's key names (SOLVER.WARMUP_ITERS, INPUT.PROB, MODEL.DIRECT, TEST.MISS).
    The tools load both and give the numbers of today's names."""
    import os

    import torch

    from config import load_config

    out, weight = sdtps_args[7], sdtps_args[5]
    today = os.path.join(out, "config.yaml")
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.yaml").write_text(old_names(open(today).read()))
    ckpt = torch.load(weight, map_location="cpu", weights_only=True)
    ckpt["cfg"] = old_names(ckpt["cfg"])
    torch.save(ckpt, old / "model_final.pth")
    assert load_config(str(old / "config.yaml")) == load_config(today)

    def suite(config, w, name):
        args = ["--config_file", config, "TEST.WEIGHT", w, "OUTPUT_DIR", str(tmp_path / name)]
        return eval_suite.main([*args, "--out", str(tmp_path / name)])

    assert suite(str(old / "config.yaml"), str(old / "model_final.pth"), "old") == suite(
        today, weight, "today"
    )
