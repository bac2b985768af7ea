"""tools/demo.py (the README's first command) and tools/benchmark.py, on the tiny synthetic set with
a schedule of one epoch: they run through and report every figure they promise."""

import json
import subprocess
import sys

import pytest

from tools import demo


def test_demo_reports_untrained_trained_and_missing(synthetic_root, tmp_path, capsys, fast):
    rows = demo.main(["--root", synthetic_root, "--out", str(tmp_path), *fast(1)])
    names = [r[0] for r in rows]
    assert names == ["DeMo", "DeMo_SDTPS"]
    for _, before, after, miss, seconds in rows:
        assert set(before) == set(after) == {1, 2, 3}
        assert list(miss) == ["RGB", "NI", "TI"] and seconds > 0
        assert all(0 <= after[p]["mAP"] <= 100 for p in after)
    out = capsys.readouterr().out
    assert "| DeMo_SDTPS | 3 |" in out and "no TI" in out
    assert (tmp_path / "DeMo_SDTPS" / "model_final.pth").exists()


def _benchmark(root, out, schedule, *args):
    """tools/benchmark.py on the smoke configs without loader workers: (its result, JSON rows)."""
    cmd = [sys.executable, "tools/benchmark.py", "--root", root, "--out", str(out), *args]
    cmd += ["--iters", "2", "--warmup", "1", "--workers", "0", *schedule]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res, [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_benchmark_runs_on_cpu_and_prints_one_json_line_per_measure(synthetic_root, tmp_path, fast):
    res, rows = _benchmark(
        synthetic_root,
        tmp_path,
        fast(1),
        *("--measures", "train", "extract", "metrics", "attention"),
        *("--config", "configs/_smoke/DeMo_SDTPS.yml", "--epochs", "3", "--gallery", "24"),
        *("--metrics-size", "20", "200"),
    )
    measures = {r["measure"] for r in rows}
    assert measures == {
        "data",
        "loader",
        "train_e2e",
        "train_model",
        "train_epochs",
        "memory_train",
        "extract_e2e_first",
        "extract_e2e",
        "extract_loader_first",
        "extract_loader",
        "extract_model",
        "metrics",
        "attention",
    }
    data = next(r for r in rows if r["measure"] == "data")  # which set was measured
    assert data["synthetic"]["dataset"] == "RGBNT201" and data["synthetic"]["hardness"] == 0.0
    epochs = next(r for r in rows if r["measure"] == "train_epochs")
    assert epochs["epochs"] == 3 and epochs["seconds_per_epoch"] > 0
    assert (tmp_path / "DeMo_SDTPS" / "last.pth").exists()  # the checkpoints are part of it
    attention = {r["backend"]: r["ms_fwd_bwd"] for r in rows if r["measure"] == "attention"}
    assert attention["MATH"] > 0 and attention["MATH, torch.compile"] > 0
    assert str(attention["CUDNN_ATTENTION"]).startswith("unavailable")  # no GPU here
    assert all(r["triplets_per_s"] > 0 for r in rows if "triplets_per_s" in r)
    assert next(r for r in rows if r["measure"] == "extract_e2e")["triplets"] == 24
    assert {r.get("pipeline") for r in rows if "triplets_per_s" in r} == {"ring", None}
    assert "[benchmark] DeMo_SDTPS: DATALOADER.PIPELINE ring, 0 workers" in res.stdout


@pytest.mark.slow
def test_benchmark_measures_both_pipelines_in_one_invocation(synthetic_root, tmp_path, fast):
    res, rows = _benchmark(
        synthetic_root,
        tmp_path,
        fast(1),
        *("--measures", "train", "--config", "configs/_smoke/DeMo.yml", "--epochs", "0"),
        *("--pipeline", "ring", "--pipeline", "plain"),
    )
    ran = [r["pipeline"] for r in rows if r["measure"] == "train_e2e"]
    assert ran == ["ring", "plain"] and all(
        r["triplets_per_s"] > 0 for r in rows if "triplets_per_s" in r
    )
    for p in ("ring", "plain"):
        assert f"[benchmark] DeMo: DATALOADER.PIPELINE {p}, 0 workers" in res.stdout
