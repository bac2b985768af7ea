"""Batches: layout, determinism across workers and epochs, P x K sampling, DDP shares."""

import multiprocessing
import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from config.validate import PIPELINES
from data import DatasetError, build_dataset, build_test_loader, build_train_loader
from data.ring import BatchRing
from data.samplers import EpochBatchSampler
from data.transforms import SampleTransform


@pytest.fixture
def train_setup(smoke_cfg):
    def make(*opts):
        cfg = smoke_cfg("SOLVER.IMS_PER_BATCH", 16, "DATALOADER.NUM_INSTANCE", 4, *opts)
        return cfg, build_dataset(cfg)

    return make


def _batches(loader, epoch):
    loader.set_epoch(epoch)
    return list(loader)


def test_batch_layout(train_setup):
    cfg, s = train_setup()
    loader = build_train_loader(cfg, s.train)
    batch = next(iter(loader))
    assert set(batch) == {
        "images",
        "pids",
        "camids",
        "sceneids",
        "index",
        "paths",
        "draws",
        "noise_seed",
    }
    assert batch["draws"].shape == (16, 3, 8) and isinstance(batch["noise_seed"], int)
    assert list(batch["images"]) == ["RGB", "NI", "TI"]
    for x in batch["images"].values():
        assert x.shape == (16, 3, 64, 32) and x.dtype == torch.float32
        assert x.abs().max() < 6  # normalised (random erasing adds N(0, 1) pixels)
    for k in ("pids", "camids", "sceneids", "index"):
        assert batch[k].dtype == torch.long and batch[k].shape == (16,)
    assert batch["paths"] == [s.train[i].key for i in batch["index"].tolist()]
    assert len(loader) == 40 // 16


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_same_batches_with_0_and_2_workers(train_setup, pipeline):
    cfg0, s = train_setup("DATALOADER.PIPELINE", pipeline)
    cfg2, _ = train_setup(
        "DATALOADER.NUM_WORKERS",
        2,
        "DATALOADER.PREFETCH_FACTOR",
        2,
        "DATALOADER.PIPELINE",
        pipeline,
    )
    b0 = _batches(build_train_loader(cfg0, s.train), 3)
    loader2 = build_train_loader(cfg2, s.train)
    b2 = _batches(loader2, 3)
    assert len(b0) == len(b2) == 2
    for x, y in zip(b0, b2):
        assert torch.equal(x["index"], y["index"])
        for m in x["images"]:
            assert torch.equal(x["images"][m], y["images"][m])
    assert not torch.equal(_batches(loader2, 4)[0]["images"]["RGB"], b2[0]["images"]["RGB"])


def test_epoch_repeats_and_differs(train_setup):
    cfg, s = train_setup()
    loader = build_train_loader(cfg, s.train)
    e2, e3, e2b = _batches(loader, 2), _batches(loader, 3), _batches(loader, 2)
    assert all(torch.equal(a["images"]["NI"], b["images"]["NI"]) for a, b in zip(e2, e2b))
    assert not torch.equal(e2[0]["index"], e3[0]["index"])


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_consecutive_epochs_stream_like_fresh_loaders(train_setup, pipeline):
    """Epochs read back to back from one stream (the workers run ahead into the next epoch) are
    the epochs a fresh loader gives; an unfinished epoch restarts the stream."""
    cfg, s = train_setup(
        "DATALOADER.NUM_WORKERS",
        2,
        "DATALOADER.PREFETCH_FACTOR",
        2,
        "DATALOADER.PIPELINE",
        pipeline,
    )
    streamed = build_train_loader(cfg, s.train)
    got = {e: _batches(streamed, e) for e in (1, 2, 3)}
    streamed.set_epoch(4)
    next(iter(streamed))  # left unfinished
    got[4] = _batches(streamed, 4)
    for e, batches in got.items():
        fresh = _batches(build_train_loader(cfg, s.train), e)
        assert len(batches) == len(fresh) == 2
        for x, y in zip(batches, fresh):
            assert torch.equal(x["index"], y["index"])
            assert torch.equal(x["images"]["TI"], y["images"]["TI"])


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_close_ends_the_pass_and_the_loader_goes_on(train_setup, pipeline):
    cfg, s = train_setup(
        "DATALOADER.NUM_WORKERS",
        2,
        "DATALOADER.PREFETCH_FACTOR",
        2,
        "DATALOADER.PIPELINE",
        pipeline,
    )
    loader = build_train_loader(cfg, s.train)
    loader.close()  # nothing started: nothing to do
    loader.set_epoch(1)
    next(iter(loader))
    loader.close()  # mid-epoch, the workers one epoch ahead
    assert loader._batches is None
    again = _batches(loader, 2)
    fresh = _batches(build_train_loader(cfg, s.train), 2)
    assert all(torch.equal(x["index"], y["index"]) for x, y in zip(again, fresh))
    loader.close()


def test_pk_batches(train_setup):
    cfg, s = train_setup("SOLVER.IMS_PER_BATCH", 32)
    for batch in _batches(build_train_loader(cfg, s.train), 1):
        counts = Counter(batch["pids"].tolist())
        assert len(counts) == 8 and set(counts.values()) == {4}


def test_pk_with_replacement_and_length():
    pids = [0] * 2 + [1] * 9 + [2] * 4 + [3] * 5
    sampler = EpochBatchSampler(pids, 8, 4, seed=1, rank=0, world_size=1)
    assert len(sampler) == (4 + 8 + 4 + 4) // 8
    for batch in sampler:
        ids = Counter(pids[i] for i, _, _ in batch)
        assert len(ids) == 2 and set(ids.values()) == {4}
    with pytest.raises(ValueError, match="ids per batch"):
        EpochBatchSampler(pids, 20, 4, seed=1, rank=0, world_size=1)


@pytest.mark.parametrize("identity", [True, False])
def test_ranks_disjoint_shares_of_one_draw(identity):
    pids = np.repeat(np.arange(10), 6).tolist()
    full = EpochBatchSampler(pids, 16, 4, seed=5, identity=identity, rank=0, world_size=1)
    ranks = [
        EpochBatchSampler(pids, 16, 4, seed=5, identity=identity, rank=r, world_size=2)
        for r in range(2)
    ]
    for s in [full, *ranks]:
        s.set_epoch(7)
    assert len(ranks[0]) == len(ranks[1]) == len(full)
    for g, b0, b1 in zip(full, *ranks):
        assert len(b0) == len(b1) == 8
        assert not {p for _, _, p in b0} & {p for _, _, p in b1}
        assert b0 + b1 == g


def test_duplicate_draw_gets_two_augmentations(train_setup):
    cfg, s = train_setup("INPUT.RE_PROB", 0.0)
    two_each = [r for pid in range(8) for r in [x for x in s.train if x.pid == pid][:2]]
    batch = _batches(build_train_loader(cfg, two_each), 1)[0]
    idx = batch["index"].tolist()
    dup = [(i, j) for i in range(len(idx)) for j in range(i + 1, len(idx)) if idx[i] == idx[j]]
    assert dup, "K = 4 from 2 images per id samples with replacement"
    assert any(
        not torch.equal(batch["images"]["RGB"][i], batch["images"]["RGB"][j]) for i, j in dup
    )


def test_paired_augmentation(train_setup):
    cfg, s = train_setup("INPUT.PAIRED_AUG", True, "INPUT.FLIP_PROB", 1.0, "INPUT.RE_PROB", 0.0)
    img = torch.arange(64 * 32 * 3).reshape(64, 32, 3).to(torch.uint8).permute(2, 0, 1)
    pixels, draws = SampleTransform(cfg, True)({"RGB": img, "NI": img, "TI": img}, 1, 5)
    assert all(p.dtype == torch.uint8 and p.shape == (3, 64, 32) for p in pixels.values())
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])
    cfg2, _ = train_setup("INPUT.PAIRED_AUG", False)
    _, draws2 = SampleTransform(cfg2, True)({"RGB": img, "NI": img, "TI": img}, 1, 5)
    assert not (torch.equal(draws2[0], draws2[1]) and torch.equal(draws2[0], draws2[2]))


def test_test_loader_shards(smoke_cfg):
    cfg = smoke_cfg("TEST.IMS_PER_BATCH", 8, "DATASETS.NAMES", "MSVR310")
    s = build_dataset(cfg)
    seen = []
    for rank in range(2):
        for batch in build_test_loader(cfg, s.gallery, rank=rank, world_size=2):
            assert batch["images"]["RGB"].shape[1:] == (3, 64, 32) and len(batch["paths"]) <= 4
            seen += batch["index"].tolist()
    assert seen == list(range(len(s.gallery)))
    one = next(iter(build_test_loader(cfg, s.gallery, rank=0, world_size=1)))
    again = next(iter(build_test_loader(cfg, s.gallery, rank=0, world_size=1)))
    assert torch.equal(one["images"]["TI"], again["images"]["TI"])


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_skip_bad(smoke_cfg, synthetic_root, tmp_path, pipeline):
    root = tmp_path / "r"
    shutil.copytree(f"{synthetic_root}/RGBNT100", root / "RGBNT100")
    cfg = smoke_cfg(
        "DATASETS.NAMES",
        "RGBNT100",
        "TEST.IMS_PER_BATCH",
        4,
        "DATALOADER.PIPELINE",
        pipeline,
        root=str(root),
    )
    s = build_dataset(cfg)
    bad = s.query[1].key
    with open(bad, "r+b") as f:
        f.truncate(100)
    with pytest.raises(DatasetError, match=bad):
        list(build_test_loader(cfg, s.query))
    cfg = smoke_cfg(
        "DATASETS.NAMES",
        "RGBNT100",
        "TEST.IMS_PER_BATCH",
        4,
        "DATASETS.SKIP_BAD",
        True,
        "DATALOADER.PIPELINE",
        pipeline,
        root=str(root),
    )
    got = [i for b in build_test_loader(cfg, s.query) for i in b["index"].tolist()]
    assert got == [i for i in range(len(s.query)) if i != 1]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_skip_bad_in_training_leaves_the_sample_out_and_logs_the_epochs_total(
    train_setup, synthetic_root, tmp_path, caplog, pipeline
):
    """An unreadable train sample is left out of each batch that drew it (the others keep
    their pixels and draws), each skip is logged, and the epoch's total is logged at its end.
    Without erasing: its noise is drawn for the batch from the seed of the batch's first
    sample."""
    cfg, s = train_setup("DATALOADER.PIPELINE", pipeline, "INPUT.RE_PROB", 0.0)
    want = _batches(build_train_loader(cfg, s.train), 1)
    bad = int(want[0]["index"][0])
    drawn = sum(b["index"].tolist().count(bad) for b in want)
    root = tmp_path / "r"
    shutil.copytree(f"{synthetic_root}/RGBNT201", root / "RGBNT201")
    opts = ("DATALOADER.PIPELINE", pipeline, "INPUT.RE_PROB", 0.0, "DATASETS.SKIP_BAD", True)
    broken_cfg, broken = train_setup(*opts, "DATASETS.ROOT_DIR", str(root))
    with open(broken.train[bad].files["NI"], "r+b") as f:
        f.truncate(100)
    with caplog.at_level("WARNING"):
        got = _batches(build_train_loader(broken_cfg, broken.train), 1)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        keep = b["index"] != bad
        assert torch.equal(a["index"], b["index"][keep])
        assert torch.equal(a["draws"], b["draws"][keep])
        for m in a["images"]:
            assert torch.equal(a["images"][m][: len(a["index"])], b["images"][m][keep])
    msgs = [r.getMessage() for r in caplog.records]
    # (the loader may already have read ahead into epoch 2 and logged more skips there)
    skips = [m for m in msgs if m.startswith("DATASETS.SKIP_BAD: skipping sample")]
    assert len(skips) >= drawn and all(broken.train[bad].key in m for m in skips)
    assert f"epoch 1: {drawn} unreadable samples skipped (DATASETS.SKIP_BAD)" in msgs


def _children():
    return {p.pid for p in multiprocessing.active_children()}


@pytest.mark.parametrize("pipeline", ["ring", "plain"])
def test_persistent_workers_serve_every_pass_until_close(smoke_cfg, pipeline):
    """A second pass is served by the same worker processes and gives the same batches; close()
    ends them and a new pass starts new ones."""
    cfg = smoke_cfg(
        "TEST.IMS_PER_BATCH",
        4,
        "DATALOADER.NUM_WORKERS",
        2,
        "DATALOADER.PREFETCH_FACTOR",
        2,
        "DATALOADER.PIPELINE",
        pipeline,
    )
    s = build_dataset(cfg)
    records = s.gallery * 4
    before = _children()
    loader = build_test_loader(cfg, records)
    first = list(loader)
    workers = _children() - before
    assert len(workers) == 2
    second = list(loader)
    assert _children() - before == workers
    want = list(build_test_loader(smoke_cfg("TEST.IMS_PER_BATCH", 4), records))
    for batches in (first, second):
        assert len(batches) == len(want)
        for a, b in zip(batches, want):
            assert torch.equal(a["index"], b["index"])
            assert all(torch.equal(a["images"][m], b["images"][m]) for m in a["images"])
    loader.close()
    assert not _children() & workers
    assert torch.equal(next(iter(loader))["images"]["NI"], want[0]["images"]["NI"])
    again = _children() - before
    assert len(again) == 2 and not again & workers
    loader.close()
    assert not _children() - before


def test_ring_slots_are_reused_within_a_pass(smoke_cfg):
    """Batches are written into P x W + LAG ring slots, fewer than a pass has batches."""
    cfg = smoke_cfg(
        "TEST.IMS_PER_BATCH", 4, "DATALOADER.NUM_WORKERS", 2, "DATALOADER.PREFETCH_FACTOR", 2
    )
    records = build_dataset(cfg).gallery * 4
    loader = build_test_loader(cfg, records)
    assert len(loader.ring) == 2 * 2 + BatchRing.LAG
    assert len(loader) > len(loader.ring)
    want = list(build_test_loader(smoke_cfg("TEST.IMS_PER_BATCH", 4), records))
    got = list(loader)
    assert [b["index"].tolist() for b in got] == [b["index"].tolist() for b in want]
    assert all(torch.equal(a["images"]["RGB"], b["images"]["RGB"]) for a, b in zip(got, want))
    loader.close()


def test_ring_without_shared_memory_names_the_settings(smoke_cfg, monkeypatch):
    def full(self):
        raise RuntimeError("unable to allocate shared memory(shm): No space left on device (28)")

    monkeypatch.setattr(torch.Tensor, "share_memory_", full)
    cfg = smoke_cfg(
        "TEST.IMS_PER_BATCH", 4, "DATALOADER.NUM_WORKERS", 2, "DATALOADER.PREFETCH_FACTOR", 2
    )
    with pytest.raises(
        RuntimeError,
        match=r"6 slots = DATALOADER.PREFETCH_FACTOR x "
        r"DATALOADER.NUM_WORKERS \+ 2, of 4 triplets at 64x32.*/dev/shm",
    ):
        build_test_loader(cfg, build_dataset(cfg).gallery)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (GPU host only)")
def test_cuda_ring_batches_equal_cpu_batches_with_slow_copies(smoke_cfg):
    """The page-locked ring and the side-stream copy: batches finished on the GPU equal those
    finished on the CPU while every copy waits behind 20 ms of work on its stream and the compute
    stream is busy too. The workers refill a slot as soon as the loader may hand it out again, so
    a copy not waited for before that would read the next batch's pixels."""
    cfg = smoke_cfg(
        "TEST.IMS_PER_BATCH", 4, "DATALOADER.NUM_WORKERS", 2, "DATALOADER.PREFETCH_FACTOR", 2
    )
    records = build_dataset(cfg).gallery * 4
    want = list(build_test_loader(cfg, records))
    loader = build_test_loader(cfg, records, device=torch.device("cuda"))
    copy = loader._copy

    def slow_copy(batch):
        if loader._copy_stream is None:
            loader._copy_stream = torch.cuda.Stream()
        with torch.cuda.stream(loader._copy_stream):
            torch.cuda._sleep(20_000_000)
        return copy(batch)

    loader._copy = slow_copy
    for _ in range(2):  # the second pass: the same workers, the ring already locked
        got = []
        for batch in loader:
            torch.cuda._sleep(20_000_000)  # the compute stream is busy as well
            got.append((batch["index"].clone(), {m: t.clone() for m, t in batch["images"].items()}))
        assert len(got) == len(want) > len(loader.ring)
        for a, (index, images) in zip(want, got):
            assert torch.equal(a["index"], index.cpu())
            for m in a["images"]:
                torch.testing.assert_close(images[m].cpu(), a["images"][m], rtol=0, atol=1e-5)
    loader.close()


def _dropped(batch):
    """(B, M) bool: which modalities of each sample carry no signal."""
    return torch.stack([x.flatten(1).abs().sum(1) == 0 for x in batch["images"].values()], 1)


def test_modality_dropout_off_leaves_batches_as_they_were(train_setup):
    """Off (the default) draws nothing; on, the other augmentations' draws do not move."""
    cfg, s = train_setup()
    on, _ = train_setup("INPUT.MODALITY_DROPOUT", 0.5)
    plain = _batches(build_train_loader(cfg, s.train), 2)
    dropped = _batches(build_train_loader(on, s.train), 2)
    for a, b in zip(plain, dropped):
        assert a["draws"].shape[-1] == 8 and b["draws"].shape[-1] == 9
        assert torch.equal(a["draws"], b["draws"][..., :8])
        assert not _dropped(a).any()
        keep = b["draws"][..., 8].bool()  # (B, M)
        assert torch.equal(~keep, _dropped(b))
        for i, m in enumerate(a["images"]):  # kept modalities: the same pixels as without
            assert torch.equal(a["images"][m][keep[:, i]], b["images"][m][keep[:, i]])


def test_modality_dropout_never_drops_everything_and_repeats(train_setup):
    cfg, s = train_setup("INPUT.MODALITY_DROPOUT", 1.0, "DATALOADER.NUM_WORKERS", 2)
    loader = build_train_loader(cfg, s.train)
    first, again = _batches(loader, 3), _batches(build_train_loader(cfg, s.train), 3)
    seen = Counter()
    for a, b in zip(first, again):  # a resumed epoch (a fresh loader) repeats the same drops
        assert torch.equal(_dropped(a), _dropped(b))
        lost = _dropped(a)
        assert lost.any(1).all() and not lost.all(1).any()  # p = 1: every sample loses 1 or 2
        seen.update(tuple(row.tolist()) for row in lost)
    assert len(seen) >= 4  # singles and pairs both occur
    only_ti, _ = train_setup("INPUT.MODALITY_DROPOUT", 1.0, "INPUT.MODALITY_DROPOUT_SETS", ("TI",))
    batch = _batches(build_train_loader(only_ti, s.train), 1)[0]
    assert _dropped(batch).tolist() == [[False, False, True]] * len(batch["pids"])


def test_modality_dropout_is_off_at_test_time(smoke_cfg):
    cfg = smoke_cfg("INPUT.MODALITY_DROPOUT", 1.0)
    s = build_dataset(cfg)
    batch = next(iter(build_test_loader(cfg, s.gallery)))
    assert not _dropped(batch).any()


def test_num_instance_above_smallest_identity_warns(train_setup, caplog):
    # The tiny set has 8 train ids of 4 to 6 triplets: K = 8 repeats images of every id.
    cfg, s = train_setup("DATALOADER.NUM_INSTANCE", 8)
    counts = Counter(r.pid for r in s.train)
    smallest = min(counts.values())
    assert max(counts.values()) < 8 <= 2 * smallest
    with caplog.at_level("WARNING", logger="data.build"):
        loader = build_train_loader(cfg, s.train)
    loader.close()
    (msg,) = [r.getMessage() for r in caplog.records if "NUM_INSTANCE" in r.getMessage()]
    assert "DATALOADER.NUM_INSTANCE 8" in msg and "8 of 8 train ids" in msg
    assert f"with {smallest} triplets" in msg and "with replacement" in msg
    caplog.clear()
    with caplog.at_level("WARNING", logger="data.build"):
        build_train_loader(train_setup()[0], s.train).close()  # K = 4 <= smallest: nothing to say
    assert not [r for r in caplog.records if "NUM_INSTANCE" in r.getMessage()]
    caplog.clear()
    with caplog.at_level("WARNING", logger="data.build"):  # the softmax sampler has no K
        build_train_loader(
            train_setup("DATALOADER.NUM_INSTANCE", 8, "DATALOADER.SAMPLER", "softmax")[0], s.train
        ).close()
    assert not [r for r in caplog.records if "NUM_INSTANCE" in r.getMessage()]
