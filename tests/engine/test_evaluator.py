"""The evaluation path with a fake model on the tiny synthetic sets: one pass over the distinct
samples, TEST.MISSING_MODALITIES zero-filling, patterns, both protocols, re-ranking,
metrics.json."""

import json
import os

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from data import build_dataset
from engine import evaluate
from engine.evaluator import missing_modalities, modality_sets, setting_name, union_records
from utils.events import EventWriter


class PidModel(nn.Module):
    """Eval features that encode the identity exactly; records what it was shown."""

    patterns = (1, 2, 3)

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.seen, self.energy = [], {}

    def forward(self, batch):
        self.seen += batch["index"].tolist()
        for mod, x in batch["images"].items():
            self.energy[mod] = self.energy.get(mod, 0.0) + x.abs().sum().item()
        ori = nn.functional.one_hot(batch["pids"] % 512, 512).float() * self.w
        return {"ori": ori, "fused": 2 * ori}


def test_union_extracts_shared_query_gallery_once(smoke_cfg):
    s201 = build_dataset(smoke_cfg())
    records, q, g = union_records(s201.query, s201.gallery)
    assert len(records) == len(s201.gallery) and torch.equal(q, g)
    s100 = build_dataset(smoke_cfg("DATASETS.NAMES", "RGBNT100"))
    records, q, g = union_records(s100.query, s100.gallery)
    assert len(records) == len(s100.query) + len(s100.gallery)
    assert all(records[i] == r for i, r in zip(g.tolist(), s100.gallery))


def test_missing_modalities_in_input_modalities_order(smoke_cfg):
    assert missing_modalities(smoke_cfg("TEST.MISSING_MODALITIES", ("TI", "RGB"))) == ["RGB", "TI"]
    cfg = smoke_cfg("INPUT.MODALITIES", ("A", "B", "C"), "TEST.MISSING_MODALITIES", ("B",))
    assert missing_modalities(cfg) == ["B"]


@pytest.mark.parametrize("name", ["RGBNT201", "MSVR310"])
def test_perfect_features_score_100_and_are_logged(smoke_cfg, tmp_path, name):
    cfg = smoke_cfg(
        "DATASETS.NAMES", name, "OUTPUT_DIR", str(tmp_path), "TEST.MISSING_MODALITIES", "NI"
    )
    splits = build_dataset(cfg)
    model = PidModel()
    writer = EventWriter(str(tmp_path))
    res = evaluate(cfg, model, splits, writer=writer, step=40, epoch=2)
    writer.close()
    assert set(res) == {1, 2, 3}
    for m in res.values():
        assert m == pytest.approx(
            {"mAP": 100.0, "mINP": 100.0, "R1": 100.0, "R5": 100.0, "R10": 100.0}
        )
    distinct = len(union_records(splits.query, splits.gallery)[0])
    assert sorted(model.seen) == list(range(distinct))  # one pass, every sample once
    assert model.energy["NI"] == 0.0 and model.energy["RGB"] > 0 and model.energy["TI"] > 0
    (line,) = [json.loads(x) for x in open(tmp_path / "metrics.json")]
    assert line["split"] == "test"
    assert (line["epoch"], line["step"]) == (2, 40)
    assert line["setting"] == "query_RGB+TI_gallery_RGB+TI"
    assert line["query_modalities"] == line["gallery_modalities"] == ["RGB", "TI"]
    assert set(line["results"]) == {"1", "2", "3"}
    # A missing-modality evaluation has tags of its own: it never overwrites the full one.
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "test/query_RGB+TI_gallery_RGB+TI/pattern3/mAP" in tags
    assert not any(t.startswith("test/pattern") for t in tags)
    assert events.Scalars("test/query_RGB+TI_gallery_RGB+TI/pattern3/mAP")[0].step == 40


def test_without_a_writer_nothing_is_written(smoke_cfg, tmp_path):
    cfg = smoke_cfg("OUTPUT_DIR", str(tmp_path))
    evaluate(cfg, PidModel(), build_dataset(cfg))
    assert os.listdir(tmp_path) == []


def test_full_modality_setting_keeps_the_plain_tag(smoke_cfg):
    cfg = smoke_cfg()
    assert setting_name(cfg, *modality_sets(cfg)) == ""
    assert modality_sets(smoke_cfg("TEST.MISSING_MODALITIES", ("RGB", "NI"))) == (("TI",), ("TI",))


def test_single_pattern_and_reranking(smoke_cfg, tmp_path):
    cfg = smoke_cfg(
        "OUTPUT_DIR",
        str(tmp_path),
        "TEST.ALL_PATTERNS",
        False,
        "TEST.RETURN_PATTERN",
        2,
        "TEST.RE_RANKING",
        True,
        "TEST.RE_RANKING_K1",
        4,
        "TEST.RE_RANKING_K2",
        2,
    )
    res = evaluate(cfg, PidModel(), build_dataset(cfg))
    assert list(res) == [2] and res[2]["mAP"] == pytest.approx(100.0)


def test_scene_protocol_changes_the_junk_set(smoke_cfg, tmp_path):
    # Identical features for every sample: ranking follows gallery order, so the protocol alone
    # decides which items are junk and the scores differ between camera and scene rules.
    class Constant(PidModel):
        def forward(self, batch):
            ori = torch.ones(len(batch["pids"]), 4) * self.w
            return {"ori": ori, "fused": ori}

    cfg = smoke_cfg("DATASETS.NAMES", "MSVR310", "OUTPUT_DIR", str(tmp_path))
    splits = build_dataset(cfg)
    scene = evaluate(cfg, Constant(), splits)[1]["mAP"]
    splits.protocol = "market"
    market = evaluate(cfg, Constant(), splits)[1]["mAP"]
    assert scene != pytest.approx(market)


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["ring", "plain"])
def test_compiled_extraction_matches_eager(smoke_cfg, pipeline):
    """SOLVER.COMPILE: one static-shape graph (the last, short batch is padded to it), same
    features as the eager model."""
    from engine.evaluator import extract_features
    from modeling import build_model

    cfg = smoke_cfg("TEST.IMS_PER_BATCH", 4, "DATALOADER.PIPELINE", pipeline)
    records = build_dataset(cfg).gallery[:10]  # batches of 4, 4, 2
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=8, num_cameras=4)
    eager = extract_features(cfg, model, records)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    compiled = extract_features(
        smoke_cfg("TEST.IMS_PER_BATCH", 4, "SOLVER.COMPILE", True, "DATALOADER.PIPELINE", pipeline),
        model,
        records,
    )
    assert counters["stats"]["unique_graphs"] == 1
    assert set(compiled) == set(eager)
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pipeline", ["ring", "plain"])
def test_extraction_keeps_its_loader_and_workers(smoke_cfg, pipeline):
    """Extracting the same records again (the next periodic evaluation, another modality set)
    reuses the evaluator's test loader and its worker processes; two loaders are kept, the least
    recently used one beyond that is closed, and closing the evaluator ends them all."""
    from multiprocessing import active_children

    from engine.evaluator import Evaluator
    from modeling import build_model

    def children():
        return {p.pid for p in active_children()}

    cfg = smoke_cfg(
        "TEST.IMS_PER_BATCH", 4, "DATALOADER.NUM_WORKERS", 2, "DATALOADER.PIPELINE", pipeline
    )
    gallery = build_dataset(cfg).gallery
    model = build_model(cfg, num_classes=8, num_cameras=4)
    sets = [gallery[:6], gallery[2:8], gallery[4:10]]
    before = children()
    with Evaluator(cfg) as evaluator:
        first = evaluator.extract(model, sets[0])
        (loader,) = evaluator._loaders.values()
        pids = children() - before
        assert len(pids) == 2
        evaluator.extract(model, sets[0], present=("NI", "TI"))
        again = evaluator.extract(model, sets[0])
        assert list(evaluator._loaders.values()) == [loader]
        assert children() - before == pids
        for k in first:
            torch.testing.assert_close(again[k], first[k])
        evaluator.extract(model, sets[1])
        evaluator.extract(model, sets[2])  # the third set: the first loader goes
        assert len(evaluator._loaders) == 2 and loader not in evaluator._loaders.values()
        assert not children() & pids and len(children() - before) == 4
    assert not evaluator._loaders and not children() - before


class PresenceModel(nn.Module):
    """Features: the identity's one-hot, once per modality block, kept only where that
    modality's input is not zero; query and gallery match only through shared modalities."""

    patterns = (1,)

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, batch):
        hot = nn.functional.one_hot(batch["pids"] % 64, 64).float() * self.w
        blocks = [
            hot * (x.flatten(1).abs().sum(1, keepdim=True) > 0) for x in batch["images"].values()
        ]
        return {"ori": torch.cat(blocks, dim=1)}


@pytest.mark.parametrize(
    "query, gallery, matched",
    [
        (("RGB", "NI"), ("NI",), True),
        (("RGB",), ("NI", "TI"), False),
    ],
)
def test_query_and_gallery_each_use_their_own_modalities(smoke_cfg, query, gallery, matched):
    cfg = smoke_cfg(
        "TEST.QUERY_MODALITIES", query, "TEST.GALLERY_MODALITIES", gallery, "TEST.FEAT_NORM", False
    )
    res = evaluate(cfg, PresenceModel(), build_dataset(cfg))
    # Disjoint sets leave every distance equal (no signal): far below a perfect ranking.
    assert (res[1]["mAP"] == pytest.approx(100.0)) is matched
    assert matched or res[1]["mAP"] < 90.0


def test_evaluation_leaves_the_global_rng_as_it_was(smoke_cfg):
    """A periodic evaluation between epochs must not shift training's random numbers (dropout):
    the checkpoint of an epoch is written before its evaluation, and a resume from it must draw
    what the uninterrupted run draws after the evaluation."""
    from modeling import build_model

    for workers in (0, 2):
        cfg = smoke_cfg("DATALOADER.NUM_WORKERS", workers)
        splits = build_dataset(cfg)
        model = build_model(cfg, num_classes=8, num_cameras=4)
        torch.manual_seed(5)
        before = torch.get_rng_state()
        evaluate(cfg, model, splits)
        assert torch.equal(torch.get_rng_state(), before), workers
