"""The train loop with a fake model and loader: files, logs, NaN stop, resume, best-on-val."""

import json
import os

import pytest
import torch
from torch import nn

from config import load_config
from engine import NonFiniteLossError, Trainer
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

    def __init__(self, nan_at=None):
        super().__init__()
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
        ce = nn.functional.cross_entropy(logits, batch["pids"])
        bad = ce * 0
        if self.nan_at is not None and len(self.calls) == self.nan_at:
            bad = bad + float("nan")
        acc = (logits.argmax(1) == batch["pids"]).float().mean()
        return {"loss_ce": ce, "loss_bad": bad, "acc_top1": acc.detach()}


def _cfg(out, *opts):
    return load_config(None, ["OUTPUT_DIR", str(out), "MODEL.DEVICE", "cpu",
                              "SOLVER.MAX_EPOCHS", 3, "SOLVER.WARMUP_ITERS", 1,
                              "SOLVER.LOG_PERIOD", 2, "SOLVER.CHECKPOINT_PERIOD", 1,
                              "SOLVER.KEEP_CHECKPOINTS", 2, "SOLVER.EVAL_PERIOD", 0,
                              "SOLVER.IMS_PER_BATCH", 8, "DATALOADER.NUM_INSTANCE", 4,
                              "SOLVER.BASE_LR", 0.01, *opts])


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
    assert read_last(str(tmp_path)) == os.path.join(str(tmp_path), "last.pth")
    ckpt = torch.load(tmp_path / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 3
    assert set(ckpt) >= {"model", "optimizer", "scheduler", "scaler", "rng", "cfg"}
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

    cfg = _cfg(tmp_path, "SOLVER.EVAL_PERIOD", 1, "DATASETS.VAL_FRACTION", 0.2,
               "TEST.RETURN_PATTERN", 1, "MODEL.HDM", False, "MODEL.ATM", False)
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
