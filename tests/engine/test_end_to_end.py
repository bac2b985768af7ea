"""train_net.py / test_net.py end to end on the tiny synthetic RGBNT201: smoke training of both
smoke configs, resume after a real SIGKILL in epoch 2, the NaN stop, re-ranking and TEST.MISS."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Small and fast: 4 ids x 2 images a batch, 2 epochs, logs every iteration.
FAST = ["SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_INSTANCE", "2", "SOLVER.MAX_EPOCHS", "2",
        "SOLVER.LOG_PERIOD", "1", "TEST.IMS_PER_BATCH", "16"]


def script(name, root, out, *opts, config="DeMo.yml", extra=()):
    cmd = [sys.executable, os.path.join(REPO, name), "--config_file",
           os.path.join(REPO, "configs", "_smoke", config), *extra,
           "DATASETS.ROOT_DIR", root, "OUTPUT_DIR", str(out), *FAST, *opts]
    env = dict(os.environ, OMP_NUM_THREADS="2")
    return cmd, env


def run(name, root, out, *opts, **kw):
    cmd, env = script(name, root, out, *opts, **kw)
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def evals(out):
    return [x for x in map(json.loads, open(os.path.join(out, "metrics.json")))
            if x["type"] == "eval"]


@pytest.mark.slow
@pytest.mark.parametrize("config", ["DeMo.yml", "DeMo_SDTPS.yml"])
def test_smoke_training_writes_the_run_folder(synthetic_root, tmp_path, config):
    res = run("train_net.py", synthetic_root, tmp_path, "SOLVER.MAX_EPOCHS", "1", config=config)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("config.yaml", "log.txt", "metrics.json", "last_checkpoint", "model_final.pth"):
        assert (tmp_path / name).exists(), name
    dumped = yaml.safe_load(open(tmp_path / "config.yaml"))
    assert dumped["DERIVED"]["num_classes"] == 8
    assert dumped["PROVENANCE"]["seed"] == 1111 and "torch" in dumped["PROVENANCE"]["packages"]
    (line,) = evals(tmp_path)
    assert set(line["results"]) == {"1", "2", "3"}
    assert set(line["results"]["3"]) == {"mAP", "mINP", "R1", "R5", "R10"}
    assert "git_commit" in line["provenance"]
    assert "| 3 (ori+fused) |" in open(tmp_path / "log.txt").read()


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_kill_in_epoch_2_matches_uninterrupted(synthetic_root, tmp_path, workers):
    opts = ("DATALOADER.NUM_WORKERS", str(workers))
    full = run("train_net.py", synthetic_root, tmp_path / "full", *opts)
    assert full.returncode == 0, full.stderr[-3000:]

    killed = tmp_path / "killed"
    cmd, env = script("train_net.py", synthetic_root, killed, *opts)
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    log = killed / "log.txt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and "epoch 2 iter 1/" in log.read_text():
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its loader workers, mid-epoch 2
    proc.wait()
    assert torch.load(killed / "last.pth", weights_only=True)["epoch"] == 1
    assert not (killed / "model_final.pth").exists()

    resumed = run("train_net.py", synthetic_root, killed, *opts, extra=["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(epoch 1 finished)" in log.read_text()
    a, b = _weights(tmp_path / "full" / "model_final.pth"), _weights(killed / "model_final.pth")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert evals(tmp_path / "full")[-1]["results"] == evals(killed)[-1]["results"]


@pytest.mark.slow
def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(synthetic_root, tmp_path):
    # Epoch 1 trains at 1e-3; epoch 2 at an absurd LR: the weights blow up, the loss follows.
    res = run("train_net.py", synthetic_root, tmp_path, "SOLVER.BASE_LR", "1e30",
              "SOLVER.BACKBONE_LR", "1e30", "SOLVER.WARMUP_FACTOR", "1e-33",
              "SOLVER.MIN_LR_FACTOR", "1.0", "SOLVER.MAX_EPOCHS", "3")
    assert res.returncode == 1, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "non-finite loss: loss_" in out and "at epoch 2, iteration" in out
    assert "Traceback" not in out
    ckpt = torch.load(tmp_path / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
