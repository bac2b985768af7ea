"""Queries with no valid gallery match: counted and named in the evaluation log; the metrics
(which skip them) unchanged."""

import dataclasses
import logging

import pytest
import torch
from torch import nn

from data import build_dataset
from engine import evaluate


class PidModel(nn.Module):
    """Eval features that encode the identity exactly."""

    patterns = (1,)

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, batch):
        return {"ori": nn.functional.one_hot(batch["pids"] % 512, 512).float() * self.w}


def test_unmatched_queries_are_counted_and_named(smoke_cfg, tmp_path, caplog):
    cfg = smoke_cfg(
        "DATASETS.NAMES",
        "RGBNT100",
        "OUTPUT_DIR",
        str(tmp_path),
        "TEST.ALL_PATTERNS",
        False,
        "TEST.RETURN_PATTERN",
        1,
    )
    splits = build_dataset(cfg)
    gone = splits.query[0].pid  # its id leaves the gallery: its queries cannot match
    lost = [q for q in splits.query if q.pid == gone]
    splits = dataclasses.replace(splits, gallery=[g for g in splits.gallery if g.pid != gone])
    n_q = len(splits.query)
    with caplog.at_level(logging.INFO, logger="engine.evaluator"):
        res = evaluate(cfg, PidModel(), splits)
    assert res[1] == pytest.approx(
        {"mAP": 100.0, "mINP": 100.0, "R1": 100.0, "R5": 100.0, "R10": 100.0}
    )
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{n_q - len(lost)} of {n_q} queries ranked" in text
    (warn,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{len(lost)} of {n_q} RGBNT100 test queries have no valid gallery match" in warn
    assert lost[0].key in warn and "\n" not in warn


def test_all_queries_matched_says_nothing_more(smoke_cfg, tmp_path, caplog):
    cfg = smoke_cfg(
        "OUTPUT_DIR", str(tmp_path), "TEST.ALL_PATTERNS", False, "TEST.RETURN_PATTERN", 1
    )
    splits = build_dataset(cfg)
    with caplog.at_level(logging.INFO, logger="engine.evaluator"):
        evaluate(cfg, PidModel(), splits)
    n = len(splits.query)
    assert f"{n} of {n} queries ranked" in caplog.text
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
