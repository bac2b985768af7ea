"""train_net.py / test_net.py end to end on the tiny synthetic RGBNT201: smoke training of both
smoke configs, resume after a real SIGKILL in epoch 2, the NaN stop, re-ranking and
TEST.MISSING_MODALITIES."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml


def evals(out, name="metrics.json"):
    return [x for x in map(json.loads, open(os.path.join(out, name))) if x["type"] == "eval"]


@pytest.mark.slow
def test_smoke_training_writes_the_run_folder(full_run):
    for name in (
        "config.yaml",
        "log.txt",
        "metrics.json",
        "last_checkpoint",
        "model_final.pth",
        "model_0001.pth",
        "model_0002.pth",
    ):
        assert (full_run / name).exists(), name
    dumped = yaml.safe_load(open(full_run / "config.yaml"))
    assert dumped["DERIVED"]["num_classes"] == 8 and dumped["DERIVED"]["num_patches"] == 32
    assert dumped["PROVENANCE"]["seed"] == 1111 and "torch" in dumped["PROVENANCE"]["packages"]
    (line,) = evals(full_run)
    assert line["epoch"] == 2 and set(line["results"]) == {"1", "2", "3"}
    assert set(line["results"]["3"]) == {"mAP", "mINP", "R1", "R5", "R10"}
    assert "git_commit" in line["provenance"]
    log = open(full_run / "log.txt").read()
    assert "| 3 (ori+fused) |" in log and "epoch 2 iter 1/" in log
    # where a run's time goes: imports, start-up, set-up, then the end, against the epochs' seconds
    started, imported, set_up, done = (
        float(re.search(pattern, log).group(1))
        for pattern in (
            r"\] ([0-9.]+) s after the process started \(interpreter, imports, device;",
            r"the imports were done at ([0-9.]+) s\)",
            r"\] set up ([0-9.]+) s after the process started",
            r"\] run done ([0-9.]+) s after the process started",
        )
    )
    epochs = sum(
        x["seconds"]
        for x in map(json.loads, open(full_run / "metrics.json"))
        if x["type"] == "epoch"
    )
    assert 0 < imported <= started <= set_up < done and done > epochs


@pytest.mark.slow
def test_new_run_into_a_finished_run_is_refused(cli, full_run):
    """Without --resume, train_net.py stops before touching a folder that holds a run."""
    before = {p.name: p.stat().st_mtime_ns for p in full_run.iterdir()}
    res = cli("train_net.py", full_run, "DATALOADER.NUM_WORKERS", "0")
    assert res.returncode == 2
    assert f"OUTPUT_DIR {full_run} already holds a training run" in res.stderr
    assert "--resume" in res.stderr and "Traceback" not in res.stderr
    assert {p.name: p.stat().st_mtime_ns for p in full_run.iterdir()} == before


@pytest.mark.slow
def test_smoke_training_sdtps(cli, tmp_path):
    res = cli("train_net.py", tmp_path, "SOLVER.MAX_EPOCHS", "1", config="DeMo_SDTPS.yml")
    assert res.returncode == 0, res.stderr[-3000:]
    assert yaml.safe_load(open(tmp_path / "config.yaml"))["DERIVED"]["sdtps_kept_tokens"] > 0
    assert set(evals(tmp_path)[0]["results"]) == {"1", "2", "3"}


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _kill_in_epoch_2_and_resume(cli, out, opts):
    """Start a run, SIGKILL it mid-epoch 2 (once epoch 1's checkpoint is on disk), resume it."""
    cmd, env = cli.command("train_net.py", out, *opts)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    log = out / "log.txt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        # epoch 1's checkpoint is written in the background: kill once it is on disk
        text = log.read_text() if log.exists() else ""
        if "epoch 2 iter 1/" in text and "last.pth (epoch 1)" in text:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its loader workers, mid-epoch 2
    proc.wait()
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 1
    assert not (out / "model_final.pth").exists()
    resumed = cli("train_net.py", out, *opts, extra=["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(epoch 1 finished)" in log.read_text()


def _same_run(a_dir, b_dir):
    a, b = _weights(a_dir / "model_final.pth"), _weights(b_dir / "model_final.pth")
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert evals(a_dir)[-1]["results"] == evals(b_dir)[-1]["results"]


@pytest.mark.slow
@pytest.mark.parametrize("workers, pipeline", [(0, "ring"), (2, "ring"), (2, "plain")])
def test_resume_after_kill_in_epoch_2_matches_uninterrupted(
    cli, full_run, tmp_path, workers, pipeline
):
    # The reference ran with 0 workers through the ring: batches must not depend on the number
    # of workers or on the pipeline either.
    opts = ("DATALOADER.NUM_WORKERS", str(workers), "DATALOADER.PIPELINE", pipeline)
    _kill_in_epoch_2_and_resume(cli, tmp_path, opts)
    _same_run(full_run, tmp_path)


@pytest.mark.slow
def test_resume_after_kill_with_modality_dropout_matches_uninterrupted(cli, tmp_path):
    """The dropped modalities are drawn per sample from the seeded stream: a resumed epoch
    drops exactly what the uninterrupted one did. With an evaluation after every epoch: the
    checkpoint is written before it, and the evaluation must not move training's RNG."""
    opts = (
        "DATALOADER.NUM_WORKERS",
        "0",
        "INPUT.MODALITY_DROPOUT",
        "0.5",
        "SOLVER.EVAL_PERIOD",
        "1",
    )
    full = cli("train_net.py", tmp_path / "full", *opts)
    assert full.returncode == 0, full.stderr[-3000:]
    _kill_in_epoch_2_and_resume(cli, tmp_path / "killed", opts)
    _same_run(tmp_path / "full", tmp_path / "killed")


@pytest.mark.slow
def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(cli, full_run, tmp_path):
    # Resume the reference run's epoch-1 checkpoint with an ID-loss weight that overflows float32.
    shutil.copy(full_run / "model_0001.pth", tmp_path / "last.pth")
    (tmp_path / "last_checkpoint").write_text("last.pth")
    before = _weights(tmp_path / "last.pth")
    res = cli("train_net.py", tmp_path, "MODEL.ID_LOSS_WEIGHT", "1e39", extra=["--resume-changed"])
    assert res.returncode == 1, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "non-finite loss: loss_id_" in out and "at epoch 2, iteration 1/" in out
    assert "Traceback" not in out
    after = _weights(tmp_path / "last.pth")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not (tmp_path / "model_0002.pth").exists()


@pytest.mark.slow
def test_eval_only_on_a_bare_state_dict_repeats_the_final_evaluation(cli, full_run, tmp_path):
    bare = tmp_path / "bare.pth"
    torch.save(_weights(full_run / "model_final.pth"), bare)
    res = cli("train_net.py", tmp_path / "eval", "TEST.WEIGHT", str(bare), extra=["--eval-only"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert not (tmp_path / "eval" / "last_checkpoint").exists()  # nothing was trained
    assert not (tmp_path / "eval" / "metrics.json").exists()
    got = evals(tmp_path / "eval", "test_metrics.json")[-1]["results"]
    want = evals(full_run)[-1]["results"]
    for p in want:
        assert got[p] == pytest.approx(want[p], abs=1e-6)


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


@pytest.mark.slow
def test_evaluations_never_touch_the_training_records(cli, full_run, tmp_path):
    """test_net.py and --eval-only inside a training folder keep their own files beside the
    run's config.yaml, metrics.json and event files, which stay as they were."""
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    before = _mtimes(run)
    weight = ("TEST.WEIGHT", str(run / "model_final.pth"))
    res = cli("test_net.py", run, *weight)
    assert res.returncode == 0, res.stderr[-3000:]
    res = cli("train_net.py", run, *weight, "TEST.MISSING_MODALITIES", "TI", extra=["--eval-only"])
    assert res.returncode == 0, res.stderr[-3000:]
    after = _mtimes(run)
    assert {k: after[k] for k in before} == before
    assert {"test_config.yaml", "test_log.txt", "test_metrics.json", "test_events"} <= set(after)
    full, miss = evals(run, "test_metrics.json")
    assert full["results"] == evals(run)[-1]["results"]  # the saved model's numbers
    assert (full["epoch"], full["setting"]) == (2, "full") and miss["setting"].endswith("RGB+NI")
    assert full["step"] == evals(run)[-1]["step"]  # one x axis for training and evaluation


@pytest.mark.slow
def test_resume_that_changes_the_schedule_stops_before_writing(cli, full_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    (run / "model_final.pth").unlink()
    before = _mtimes(run)
    res = cli(
        "train_net.py", run, "SOLVER.MAX_EPOCHS", "3", "SOLVER.BASE_LR", "0.01", extra=["--resume"]
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "SOLVER.MAX_EPOCHS: 2 -> 3" in res.stderr and "SOLVER.BASE_LR: " in res.stderr
    assert "--resume-changed" in res.stderr
    after = _mtimes(run)
    # Only the log gained lines (and the lock its holder); config.yaml and every checkpoint are
    # as they were.
    ignore = ("log.txt", "train.lock")
    assert {k: v for k, v in after.items() if k not in ignore} == {
        k: v for k, v in before.items() if k not in ignore
    }


@pytest.mark.slow
def test_second_run_into_a_live_run_stops_with_its_pid(cli, tmp_path):
    from engine.run_dir import RunLock

    lock = RunLock(str(tmp_path)).acquire()
    lock.stamp()
    try:
        res = cli("train_net.py", tmp_path, extra=["--resume"])
    finally:
        lock.release()
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"in use by a live run (pid {os.getpid()} on " in res.stderr
    assert "started 20" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.lock"]


@pytest.mark.slow
def test_a_killed_run_does_not_leave_its_lock_stuck(tmp_path):
    from engine.run_dir import RunLock

    code = (
        "import sys, time; sys.path.insert(0, %r); from engine.run_dir import RunLock; "
        "lock = RunLock(%r).acquire(); lock.stamp(); print('locked', flush=True); "
        "time.sleep(60)"
    )
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, "-c", code % (repo, str(tmp_path))], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(Exception, match=f"pid {proc.pid} "):
        RunLock(str(tmp_path)).acquire()
    proc.kill()
    proc.wait()
    RunLock(str(tmp_path)).acquire().release()  # free again once the holder is gone


@pytest.mark.slow
def test_run_folder_in_demo_names_resumes_and_evaluates(cli, full_run, tmp_path, old_names):
    """A run folder written before the renames: config.yaml and the checkpoint's stored cfg use
    DeMo's key names. `--resume` with that config.yaml continues it without a config-changed stop
    and ends with the uninterrupted run's weights and numbers; test_net.py evaluates its
    checkpoint."""
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    for name in ("model_final.pth", "last.pth", "model_0002.pth"):
        (run / name).unlink()
    (run / "last_checkpoint").write_text("model_0001.pth")
    config = run / "config.yaml"
    config.write_text(old_names(config.read_text()))
    ckpt = torch.load(run / "model_0001.pth", weights_only=True)
    ckpt["cfg"] = old_names(ckpt["cfg"])
    torch.save(ckpt, run / "model_0001.pth")
    res = cli(
        "train_net.py", run, "DATALOADER.NUM_WORKERS", "0", config=str(config), extra=["--resume"]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    log = (run / "log.txt").read_text()
    stored = f"the config stored in {run / 'model_0001.pth'}"
    assert f"SOLVER.WARMUP_ITERS (from {stored}) is DeMo's name for SOLVER.WARMUP_EPOCHS" in log
    assert f"MODEL.DIRECT 1 (from {config}) is DeMo's name for MODEL.JOINT_ORI_HEAD" in log
    _same_run(full_run, run)
    res = cli(
        "test_net.py",
        tmp_path / "eval",
        "TEST.WEIGHT",
        str(run / "model_0001.pth"),
        config=str(config),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert evals(tmp_path / "eval", "test_metrics.json")[-1]["epoch"] == 1
