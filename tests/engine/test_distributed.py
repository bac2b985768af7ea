"""Two gloo processes on the CPU (torchrun): sharded evaluation equals the single-process one,
and a 2-process training run completes and resumes, with files written by rank 0 only."""

import json

import pytest
import torch


def _results(out, name="metrics.json"):
    lines = [json.loads(x) for x in open(out / name)]
    return [x for x in lines if x["type"] == "eval"][-1]["results"]


def _agree(a, b):
    assert a.keys() == b.keys() == {"1", "2", "3"}
    for p in a:
        for k in a[p]:
            assert a[p][k] == pytest.approx(b[p][k], abs=1e-6), (p, k)


@pytest.mark.slow
def test_one_and_two_process_evaluation_agree(cli, full_run, tmp_path):
    weight = ("TEST.WEIGHT", str(full_run / "model_final.pth"))
    one = cli("test_net.py", tmp_path / "one", *weight)
    assert one.returncode == 0, one.stderr[-3000:]
    two = cli("test_net.py", tmp_path / "two", *weight, nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    _agree(
        _results(tmp_path / "one", "test_metrics.json"),
        _results(tmp_path / "two", "test_metrics.json"),
    )
    # Rank 0 alone writes: one metrics line, one table in the log.
    assert len(open(tmp_path / "two" / "test_metrics.json").readlines()) == 1
    assert open(tmp_path / "two" / "test_log.txt").read().count("| 3 (ori+fused) |") == 1


@pytest.mark.slow
def test_two_process_training_completes_and_resumes(cli, tmp_path):
    first = cli(
        "train_net.py",
        tmp_path,
        "SOLVER.MAX_EPOCHS",
        "1",
        "SOLVER.DDP_BUCKET_MB",
        "0.5",
        "SOLVER.DDP_GRAD_DTYPE",
        "bfloat16",
        nproc=2,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert "0.5 MB gradient buckets, all-reduced in bfloat16" in open(tmp_path / "log.txt").read()
    # The last epoch's checkpoint is model_final.pth, in last.pth's place.
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "last.pth").exists()
    # A longer schedule is a changed config: refused, once (rank 0 speaks), then accepted.
    refused = cli("train_net.py", tmp_path, extra=["--resume"], nproc=2)
    assert refused.returncode != 0 and refused.stderr.count("SOLVER.MAX_EPOCHS: 1 -> 2") == 1
    again = cli("train_net.py", tmp_path, extra=["--resume-changed"], nproc=2)
    assert again.returncode == 0, again.stderr[-3000:]
    log = open(tmp_path / "log.txt").read()
    assert "--resume-changed: SOLVER.MAX_EPOCHS 1 -> 2" in log
    assert "(epoch 1 finished)" in log and "epoch 2 iter 1/" in log
    ckpt = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert ckpt["epoch"] == 2 and len(ckpt["rng"]) == 2
    assert log.count("command:") == 3  # one line a run: ranks other than 0 stay quiet
    # The numbers the run printed are its saved model's: every rank evaluated rank 0's buffers.
    test = cli("test_net.py", tmp_path / "test", "TEST.WEIGHT", str(tmp_path / "model_final.pth"))
    assert test.returncode == 0, test.stderr[-3000:]
    _agree(_results(tmp_path), _results(tmp_path / "test", "test_metrics.json"))


@pytest.mark.slow
def test_two_process_training_lands_near_the_one_process_run(cli, tmp_path):
    """Same global batch and schedule over 1 and 2 ranks: the final test mAP agrees within 5 points
    (not exactly: the two runs see different per-rank BatchNorm statistics and reduction orders)."""
    opts = ("SOLVER.MAX_EPOCHS", "8", "SOLVER.CHECKPOINT_PERIOD", "0")
    one = cli("train_net.py", tmp_path / "one", *opts)
    assert one.returncode == 0, one.stderr[-3000:]
    two = cli("train_net.py", tmp_path / "two", *opts, nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _results(tmp_path / "one")["3"]["mAP"], _results(tmp_path / "two")["3"]["mAP"]
    assert abs(a - b) <= 5.0, (a, b)
    print(f"pattern-3 mAP: 1 process {a:.2f}, 2 processes {b:.2f}")
