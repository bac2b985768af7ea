"""DATALOADER.PIPELINE: the plain and the ring pipeline give the same batches, bit for bit."""

import pytest
import torch

from config import ConfigError
from data import build_dataset, build_test_loader, build_train_loader


def _epochs(loader, epochs):
    out = []
    for e in epochs:
        loader.set_epoch(e)
        out += list(loader)
    loader.close()
    return out


def _assert_same(got, want):
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        assert list(a) == list(b)  # the key order too (torch.compile guards on it)
        assert a["paths"] == b["paths"] and a.get("noise_seed") == b.get("noise_seed")
        for k in ("pids", "camids", "sceneids", "index", "draws"):
            if k in b:
                assert torch.equal(a[k], b[k]), k
        assert list(a["images"]) == list(b["images"])
        for m in b["images"]:
            assert a["images"][m].dtype == torch.float32
            assert torch.equal(a["images"][m], b["images"][m]), m


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_plain_and_ring_train_batches_are_identical(smoke_cfg, dropout):
    """Two epochs (2 iterations each) after the BatchTransform on the CPU: plain and ring, with 0
    and with 2 workers, against the ring with 0 workers (images, draws, order, labels)."""

    def cfg(pipeline, workers):
        return smoke_cfg(
            "SOLVER.IMS_PER_BATCH",
            16,
            "DATALOADER.NUM_INSTANCE",
            4,
            "INPUT.MODALITY_DROPOUT",
            dropout,
            "DATALOADER.PIPELINE",
            pipeline,
            "DATALOADER.NUM_WORKERS",
            workers,
            "DATALOADER.PREFETCH_FACTOR",
            2,
        )

    records = build_dataset(cfg("ring", 0)).train
    want = _epochs(build_train_loader(cfg("ring", 0), records), (1, 2))
    assert len(want) == 4 and not torch.equal(want[0]["index"], want[2]["index"])
    if dropout:
        assert want[0]["draws"].shape[-1] == 9 and not want[0]["draws"][..., 8].all()
    for pipeline, workers in (("plain", 0), ("plain", 2), ("ring", 2)):
        got = _epochs(build_train_loader(cfg(pipeline, workers), records), (1, 2))
        _assert_same(got, want)


@pytest.mark.parametrize("workers", [0, 2])
def test_plain_and_ring_test_batches_are_identical(smoke_cfg, workers):
    def cfg(pipeline):
        return smoke_cfg(
            "TEST.IMS_PER_BATCH",
            4,
            "DATALOADER.PIPELINE",
            pipeline,
            "DATALOADER.NUM_WORKERS",
            workers,
            "DATALOADER.PREFETCH_FACTOR",
            2,
        )

    gallery = build_dataset(cfg("ring")).gallery
    loaders = [build_test_loader(cfg(p), gallery) for p in ("ring", "plain")]
    want, got = (list(x) for x in loaders)
    _assert_same(got, want)
    assert [i for b in got for i in b["index"].tolist()] == list(range(len(gallery)))
    for x in loaders:
        x.close()


def test_unknown_pipeline_names_the_key_and_the_choices(smoke_cfg):
    msg = r"DATALOADER.PIPELINE 'fast' is not one of \('ring', 'plain'\)"
    with pytest.raises(ConfigError, match=msg):  # when the config loads, before any run file
        smoke_cfg("DATALOADER.PIPELINE", "fast")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (GPU host only)")
@pytest.mark.parametrize("train", [False, True])
def test_cuda_plain_batches_equal_cpu_batches_with_slow_copies(smoke_cfg, train):
    """The side-stream prefetch: batches finished on the GPU equal those finished on the CPU
    while every copy waits behind work queued on the side stream (a batch handed out before
    its copy landed would show other pixels), and the compute stream, five times as busy per
    batch, falls behind the copies (a copy into memory the compute stream has yet to read would
    too). No random erasing: its noise is drawn by a generator on the batch's device, and CUDA's
    generator draws other numbers than the CPU's from the same seed."""
    cfg = smoke_cfg(
        "INPUT.RE_PROB",
        0.0,
        "TEST.IMS_PER_BATCH",
        4,
        "SOLVER.IMS_PER_BATCH",
        8,
        "DATALOADER.NUM_INSTANCE",
        2,
        "DATALOADER.NUM_WORKERS",
        2,
        "DATALOADER.PREFETCH_FACTOR",
        2,
        "DATALOADER.PIPELINE",
        "plain",
    )
    s = build_dataset(cfg)

    def build(device=None):
        if train:
            return build_train_loader(cfg, s.train, device=device)
        return build_test_loader(cfg, s.gallery * 2, device=device)

    def passes(loader, n):
        for e in range(1, n + 1):
            if train:
                loader.set_epoch(e)
            yield e, loader

    want = {e: list(x) for e, x in passes(build(), 2)}
    loader = build(torch.device("cuda"))
    prefetcher = loader.source.prefetcher if train else loader.prefetcher
    load = prefetcher._load

    def slow_load(batch):
        if prefetcher._stream is None:
            prefetcher._stream = torch.cuda.Stream()
        with torch.cuda.stream(prefetcher._stream):
            torch.cuda._sleep(20_000_000)
        return load(batch)

    prefetcher._load = slow_load
    for e, x in passes(loader, 2):  # the second pass: the same workers
        got = []
        for batch in x:
            torch.cuda._sleep(100_000_000)  # the compute stream falls behind the copies
            got.append((batch["index"].clone(), {m: t.clone() for m, t in batch["images"].items()}))
            del batch
        assert len(got) == len(want[e]) > 1
        for a, (index, images) in zip(want[e], got):
            assert torch.equal(a["index"], index.cpu())
            for m in a["images"]:
                torch.testing.assert_close(images[m].cpu(), a["images"][m], rtol=0, atol=1e-5)
    loader.close()
