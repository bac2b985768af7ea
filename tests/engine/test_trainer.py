"""The train loop with a fake model and loader: files, logs, NaN stop, resume, best-on-val."""

import json
import logging
import os

import pytest
import torch
from torch import nn

from config import load_config
from engine import NonFiniteLossError, Trainer
from engine.run_dir import RunDirError
from utils.checkpoint import read_last


class FakeLoader:
    """`n` batches per epoch; batch contents depend only on (seed, epoch, position)."""

    def __init__(self, n=4, batch=6, seed=0, fail_at=None):
        self.n, self.batch, self.seed, self.epoch = n, batch, seed, 0
        self.fail_at = fail_at  # (epoch, iteration): raise there, like a killed process

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.n

    def close(self):
        self.closed = True

    def __iter__(self):
        for i in range(self.n):
            if self.fail_at == (self.epoch, i + 1):
                raise KeyboardInterrupt("simulated kill")
            g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch * 1009 + i)
            x = torch.randn(self.batch, 8, generator=g)
            yield {"images": {"RGB": x}, "pids": (x[:, 0] > 0).long(), "index": torch.arange(6)}


class FakeModel(nn.Module):
    """`backbone` + head; dropout makes the result depend on the global torch RNG.

    nan_at: (epoch, iteration) at which `loss_bad` becomes NaN (the trainer sets `epoch_iter`).
    """

    def __init__(self, nan_at=None, inf_grad_at=None):
        super().__init__()
        self.inf_grad_at = inf_grad_at  # forward call whose backward gives non-finite gradients
        self.backbone = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3))
        self.head = nn.Linear(16, 2)
        self.nan_at, self.calls = nan_at, []
        self.patterns = (1,)

    def forward(self, batch):
        x = self.backbone(batch["images"]["RGB"])
        logits = self.head(x)
        if not self.training:
            return {"ori": x}
        self.calls.append(1)
        if len(self.calls) == self.inf_grad_at:
            logits.register_hook(lambda g: g * float("inf"))
        ce = nn.functional.cross_entropy(logits, batch["pids"])
        bad = ce * 0
        if self.nan_at is not None and len(self.calls) == self.nan_at:
            bad = bad + float("nan")
        acc = (logits.argmax(1) == batch["pids"]).float().mean()
        return {"loss_ce": ce, "loss_bad": bad, "acc_top1": acc.detach()}


def _cfg(out, *opts):
    return load_config(
        None,
        [
            "OUTPUT_DIR",
            str(out),
            "MODEL.DEVICE",
            "cpu",
            "SOLVER.MAX_EPOCHS",
            3,
            "SOLVER.WARMUP_EPOCHS",
            1,
            "SOLVER.LOG_PERIOD",
            2,
            "SOLVER.CHECKPOINT_PERIOD",
            1,
            "SOLVER.KEEP_CHECKPOINTS",
            2,
            "SOLVER.EVAL_PERIOD",
            0,
            "SOLVER.IMS_PER_BATCH",
            8,
            "DATALOADER.NUM_INSTANCE",
            4,
            "SOLVER.BASE_LR",
            0.01,
            *opts,
        ],
    )


def _train(cfg, model=None, loader=None, resume=False, evaluator=None):
    torch.manual_seed(0)
    model = model or FakeModel()
    Trainer(cfg, model, loader or FakeLoader(), evaluator).train(resume=resume)
    return model


def test_run_writes_checkpoints_and_metrics(tmp_path):
    _train(_cfg(tmp_path))
    names = sorted(os.listdir(tmp_path))
    assert "model_0001.pth" not in names  # rotated away: only the last two are kept
    for n in ("model_0002.pth", "model_0003.pth", "model_final.pth", "last.pth", "metrics.json"):
        assert n in names
    # The last epoch's checkpoint is model_final.pth (in last.pth's place); last.pth the one before.
    assert read_last(str(tmp_path)) == os.path.join(str(tmp_path), "model_final.pth")
    for name, epoch in (("model_final.pth", 3), ("last.pth", 2)):
        ckpt = torch.load(tmp_path / name, weights_only=True)
        assert ckpt["epoch"] == epoch
        assert all(ckpt[k] is not None for k in ("model", "optimizer", "scheduler", "rng", "cfg"))
    lines = [json.loads(x) for x in open(tmp_path / "metrics.json")]
    train = [x for x in lines if x["type"] == "train"]
    assert len(train) == 6  # iterations 2 and 4 of each of 3 epochs
    assert {"loss_ce", "loss_total", "acc_top1", "lr", "triplets_per_s"} <= set(train[0])
    assert train[0]["provenance"]["seed"] == 1111


def test_nan_loss_stops_naming_epoch_iteration_and_loss(tmp_path):
    cfg = _cfg(tmp_path)
    # 4 iterations an epoch: the 7th forward is epoch 2, iteration 3.
    with pytest.raises(NonFiniteLossError, match=r"loss_bad at epoch 2, iteration 3/4"):
        _train(cfg, FakeModel(nan_at=7))
    ckpt = torch.load(read_last(str(tmp_path)), weights_only=True)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


@pytest.mark.parametrize("amp", ["off", "fp16"])
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, amp):
    """Also in fp16 (DeMo's own AMP): the GradScaler's state goes through the checkpoint."""
    full = _train(_cfg(tmp_path / "full", "SOLVER.AMP", amp))
    if amp == "fp16":
        scaler = torch.load(tmp_path / "full" / "last.pth", weights_only=True)["scaler"]
        assert scaler["scale"] > 0 and scaler["_growth_tracker"] > 0
    cfg = _cfg(tmp_path / "killed", "SOLVER.AMP", amp)
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, loader=FakeLoader(fail_at=(2, 3)))
    assert torch.load(read_last(cfg.OUTPUT_DIR), weights_only=True)["epoch"] == 1
    resumed = _train(cfg, resume=True)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_best_checkpoint_is_chosen_on_validation_only(tmp_path):
    calls = []
    scores = {1: 10.0, 2: 30.0, 3: 20.0}

    def evaluator(model, split, writer, step, epoch):
        calls.append((split, epoch))
        return {1: {"mAP": scores[epoch] if split == "val" else 99.0}}

    cfg = _cfg(
        tmp_path,
        "SOLVER.EVAL_PERIOD",
        1,
        "DATASETS.VAL_FRACTION",
        0.2,
        "TEST.RETURN_PATTERN",
        1,
        "MODEL.HDM",
        False,
        "MODEL.ATM",
        False,
    )
    _train(cfg, evaluator=evaluator)
    assert calls == [("val", 1), ("val", 2), ("val", 3), ("test", 3)]
    best = torch.load(tmp_path / "model_best.pth", weights_only=True)
    assert best["epoch"] == 2 and best["extra"]["best_val_mAP"] == 30.0


def test_without_validation_test_is_reported_but_never_selects(tmp_path):
    calls = []

    def evaluator(model, split, writer, step, epoch):
        calls.append((split, epoch))
        return {1: {"mAP": 50.0}}

    _train(_cfg(tmp_path, "SOLVER.EVAL_PERIOD", 2), evaluator=evaluator)
    assert calls == [("test", 2), ("test", 3)]
    assert not (tmp_path / "model_best.pth").exists()


def _killed_in_epoch_3(tmp_path, *opts):
    """A run killed in epoch 3 after its first record (last.pth, model_0001.pth and
    model_0002.pth on disk), and the uninterrupted run's model."""
    full = _train(_cfg(tmp_path / "full", *opts))
    cfg = _cfg(tmp_path / "killed", *opts)
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, loader=FakeLoader(fail_at=(3, 3)))
    return cfg, full


def _same(a, b):
    return [
        k
        for (k, x), y in zip(a.state_dict().items(), b.state_dict().values())
        if not torch.equal(x, y)
    ] == []


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, damage, caplog):
    caplog.set_level(logging.INFO)
    cfg, full = _killed_in_epoch_3(tmp_path)
    last = tmp_path / "killed" / "last.pth"
    if damage == "missing":
        last.unlink()
    else:
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    os.utime(tmp_path / "killed" / "model_0001.pth", (1, 1))  # older than model_0002.pth
    resumed = _train(cfg, resume=True)
    assert "model_0002.pth (epoch 2 finished)" in caplog.text
    assert ("does not exist" if damage == "missing" else "does not load") in caplog.text
    assert _same(full, resumed)


def test_resume_stops_when_a_run_has_nothing_intact(tmp_path):
    cfg, _ = _killed_in_epoch_3(tmp_path)
    out = tmp_path / "killed"
    for name in ("last.pth", "model_0001.pth", "model_0002.pth"):
        (out / name).write_bytes(b"not a checkpoint")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RunDirError, match="no checkpoint that loads completely"):
        _train(cfg, resume=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_keeps_one_record_per_iteration(tmp_path):
    """The unfinished epoch's records go: the resumed run's metrics.json reads as the
    uninterrupted run's."""
    cfg, _ = _killed_in_epoch_3(tmp_path)
    _train(cfg, resume=True)

    def steps(out):
        return [
            (x["epoch"], x["iter"])
            for x in map(json.loads, open(out / "metrics.json"))
            if x["type"] == "train"
        ]

    assert steps(tmp_path / "killed") == steps(tmp_path / "full")


class Recorder:
    """A fake evaluator that records like the real one (metrics.json lines through the writer)
    and can fail, like a crash in evaluation, at one call."""

    def __init__(self, scores, fail_at=None):
        self.scores, self.fail_at, self.calls = scores, fail_at, []

    def __call__(self, model, split, writer, step, epoch):
        if (split, epoch) == self.fail_at:
            self.fail_at = None
            raise KeyboardInterrupt("simulated crash in evaluation")
        self.calls.append((split, epoch))
        score = self.scores[epoch] if split == "val" else 99.0
        writer.write({"type": "eval", "split": split, "epoch": epoch, "step": step})
        return {1: {"mAP": score}}


VAL = (
    "SOLVER.EVAL_PERIOD",
    1,
    "DATASETS.VAL_FRACTION",
    0.2,
    "TEST.RETURN_PATTERN",
    1,
    "SOLVER.MAX_EPOCHS",
    4,
)


def test_a_crash_in_evaluation_keeps_the_epochs_weights_and_resume_finishes_it(tmp_path):
    cfg = _cfg(tmp_path, *VAL)
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, evaluator=Recorder({1: 10.0, 2: 30.0}, fail_at=("val", 2)))
    assert torch.load(read_last(cfg.OUTPUT_DIR), weights_only=True)["epoch"] == 2
    again = Recorder({1: 10.0, 2: 30.0, 3: 20.0, 4: 25.0})
    _train(cfg, resume=True, evaluator=again)
    assert again.calls == [("val", 2), ("val", 3), ("val", 4), ("test", 4)]
    best = torch.load(tmp_path / "model_best.pth", weights_only=True)
    assert best["epoch"] == 2 and best["extra"]["best_val_mAP"] == 30.0


def test_a_crash_in_the_final_evaluation_resumes_from_model_final_and_only_evaluates(tmp_path):
    cfg = _cfg(tmp_path, *VAL)
    scores = {1: 10.0, 2: 30.0, 3: 20.0, 4: 25.0}
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, evaluator=Recorder(scores, fail_at=("test", 4)))
    final = tmp_path / "model_final.pth"
    assert read_last(cfg.OUTPUT_DIR) == str(final)  # written before the final evaluation
    weights = torch.load(final, weights_only=True)
    assert weights["epoch"] == 4 and weights["optimizer"] is not None
    again = Recorder(scores)
    _train(cfg, resume=True, evaluator=again)
    assert again.calls == [("test", 4)]
    after = torch.load(final, weights_only=True)
    assert all(torch.equal(after["model"][k], v) for k, v in weights["model"].items())


def test_model_best_is_never_replaced_by_a_worse_model_after_a_resume(tmp_path):
    """Killed after epoch 2's model_best.pth and before epoch 3's checkpoint: last.pth (epoch 2,
    written before that evaluation) still holds epoch 1's best score."""
    scores = {1: 10.0, 2: 30.0, 3: 20.0, 4: 25.0}
    cfg = _cfg(tmp_path, *VAL)
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, loader=FakeLoader(fail_at=(3, 1)), evaluator=Recorder(scores))
    assert torch.load(tmp_path / "last.pth", weights_only=True)["extra"]["best_val_mAP"] == 10.0
    again = Recorder(scores)
    _train(cfg, resume=True, evaluator=again)
    assert again.calls == [("val", 3), ("val", 4), ("test", 4)]  # epoch 2's was recorded
    best = torch.load(tmp_path / "model_best.pth", weights_only=True)
    assert best["epoch"] == 2 and best["extra"]["best_val_mAP"] == 30.0


def test_fp16_skipped_steps_are_counted_per_epoch(tmp_path):
    """GradScaler skips a step whose gradients overflow; metrics.json says how many, per epoch."""
    cfg = _cfg(tmp_path, "SOLVER.AMP", "fp16")
    _train(cfg, FakeModel(inf_grad_at=6))  # epoch 2, iteration 2
    epochs = [x for x in map(json.loads, open(tmp_path / "metrics.json")) if x["type"] == "epoch"]
    assert [x["amp_skipped_steps"] for x in epochs] == [0, 1, 0]
    assert epochs[1]["amp_scale"] < epochs[0]["amp_scale"]
