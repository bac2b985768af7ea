"""Train and test loaders of batch dicts (docs/ARCHITECTURE.md, `data`).

Batch: {"images": {modality: FloatTensor(B, 3, H, W)}, "pids", "camids", "sceneids", "index":
LongTensor(B), "paths": list[str]}, on the loader's `device` (the CPU when None). `index` is the
record's position in the list given to the builder. Workers hand over uint8 pixels and their
augmentation draws ("draws", "noise_seed"); the loader copies them to `device` (on a GPU: on a
side stream, so the copy overlaps the model's work on the previous batch) and finishes the pixel
work there (data/transforms.py). With DATASETS.SKIP_BAD an unreadable sample is left out of
its batch (B shrinks), logged by the worker, and the train loader logs each epoch's total: nothing
is dropped silently.
"""

import logging

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, default_collate

from utils import comm

from .datasets import DatasetError
from .samplers import EpochBatchSampler, EpochStream, shard_range
from .transforms import NOISE_SEED, BatchTransform, TripletTransform, read_pixels

logger = logging.getLogger(__name__)


class TripletDataset(Dataset):
    """Records -> sample dicts; an item is a record index or (index, epoch, stream_position)."""

    def __init__(self, records, transform, skip_bad=False):
        self.records, self.transform, self.skip_bad = records, transform, skip_bad

    def __len__(self):
        return len(self.records)

    def __getitem__(self, item):
        idx, epoch, pos = item if isinstance(item, tuple) else (item, 0, item)
        rec = self.records[idx]
        try:
            pixels = read_pixels(rec, self.transform.size)
        except DatasetError as e:
            if not self.skip_bad:
                raise
            logger.warning("DATASETS.SKIP_BAD: skipping sample %s: %s", rec.key, e)
            return None
        pixels, draws = self.transform(pixels, epoch, pos)
        return {"images": pixels, "draws": draws, "pid": rec.pid, "camid": rec.camid,
                "sceneid": rec.sceneid, "index": idx, "path": rec.key}


class Collate:
    """Sample dicts (None = skipped) -> one batch dict of uint8 images; an all-skipped batch has
    B = 0. Training batches also carry "draws" (B, M, N_DRAWS) and "noise_seed" (an int)."""

    def __init__(self, modalities, size):
        self.modalities, self.size = tuple(modalities), tuple(size)

    def __call__(self, samples):
        samples = [s for s in samples if s is not None]
        if samples:
            # default_collate stacks straight into shared memory inside a worker (one copy
            # less); the pixels are H x W x 3 in memory, stacked as such (a plain copy).
            images = {m: default_collate([s["images"][m].permute(1, 2, 0) for s in samples])
                      .permute(0, 3, 1, 2) for m in self.modalities}
        else:
            images = {m: torch.zeros(0, 3, *self.size, dtype=torch.uint8)
                      for m in self.modalities}

        def longs(key):
            return torch.tensor([s[key] for s in samples], dtype=torch.long)

        batch = {"images": images, "pids": longs("pid"), "camids": longs("camid"),
                 "sceneids": longs("sceneid"), "index": longs("index"),
                 "paths": [s["path"] for s in samples]}
        if samples and samples[0]["draws"] is not None:
            batch["draws"] = torch.stack([s["draws"] for s in samples])
            batch["noise_seed"] = int(batch["draws"][0, 0, NOISE_SEED])
        return batch


def to_device(batch, device, used_on=None):
    """Tensors (also inside dicts) to `device` without blocking the host; the rest as is.

    used_on: the CUDA stream that will use the copies when they are made on another one; it is
    recorded on each, so the caching allocator does not hand their memory to a later copy before
    that stream is done with them.
    """
    if isinstance(batch, torch.Tensor):
        x = batch.to(device, non_blocking=True)
        if used_on is not None:
            x.record_stream(used_on)
        return x
    if isinstance(batch, dict):
        return {k: to_device(v, device, used_on) for k, v in batch.items()}
    return batch


class DeviceLoader:
    """Iterates a DataLoader and finishes each batch on `device` (None: where it is): a
    non-blocking copy of the uint8 pixels, then the BatchTransform.

    On CUDA the copy (from pinned memory) runs on a stream of its own, which the current stream
    then waits for: the copy engine moves batch i + 1 while the SMs still run the model on batch i,
    instead of queueing behind it on one stream.
    """

    def __init__(self, loader, transform, device=None):
        self.loader, self.transform = loader, transform
        self.device = None if device is None else torch.device(device)
        self._copy_stream = None

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield self.finish(batch)

    def finish(self, batch):
        if self.device is not None:
            batch = self._copy(batch)
        return self.transform(batch)

    def _copy(self, batch):
        if self.device.type != "cuda":
            return to_device(batch, self.device)
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(self.device)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            batch = to_device(batch, self.device, used_on=compute)
        compute.wait_stream(self._copy_stream)
        return batch


class TrainLoader(DeviceLoader):
    """The training batches of one epoch at a time: call set_epoch(e) (1-based), then iterate.

    Consecutive epochs are read from one stream (samplers.EpochStream), so the workers never
    stall at an epoch boundary; setting any other epoch, or leaving an epoch unfinished, restarts
    the stream there. The batches are the same either way.
    """

    def __init__(self, loader, stream, transform, device=None):
        super().__init__(loader, transform, device)
        self.stream, self.sampler = stream, stream.sampler
        self.epoch, self._batches, self._next_epoch = 1, None, None

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.sampler)

    def __iter__(self):
        if self._batches is None or self._next_epoch != self.epoch:
            self.close()
            self.stream.start, self.stream.closed = self.epoch, False
            self._batches = iter(self.loader)
        self._next_epoch = None  # until this epoch is read to its end
        skipped = 0
        for _ in range(len(self)):
            batch = next(self._batches)
            skipped += self.sampler.local - len(batch["paths"])
            if len(batch["paths"]):
                yield self.finish(batch)
        self._next_epoch = self.epoch + 1
        if skipped:
            logger.warning("epoch %d: %d unreadable samples skipped (DATASETS.SKIP_BAD)",
                           self.epoch, skipped)

    def close(self):
        """Stop the stream and read out the batches the workers already have in flight.

        The DataLoader then ends its pass normally and shuts its workers down.
        """
        batches, self._batches, self._next_epoch = self._batches, None, None
        if batches is None:
            return
        self.stream.closed = True
        try:
            for _ in batches:
                pass
        except Exception as e:  # a broken worker: nothing more to read
            logger.debug("closing the train loader: %s", e)


def _loader_kwargs(cfg):
    # No persistent workers: a train loader makes one pass for the whole run (EpochStream) and a
    # test loader one pass in all, so they would save nothing; and with pinned memory, persistent
    # workers hold the process's exit for 5 s each (pytorch/pytorch#81794), 70 s with 14 workers.
    workers = cfg.DATALOADER.NUM_WORKERS
    kw = {"num_workers": workers,
          "pin_memory": torch.cuda.is_available() and cfg.MODEL.DEVICE != "cpu"}
    if workers > 0:
        kw["prefetch_factor"] = cfg.DATALOADER.PREFETCH_FACTOR
    return kw


def build_train_loader(cfg, records, rank=None, world_size=None, device=None):
    """TrainLoader of this rank's IMS_PER_BATCH / world_size share of every global batch, its
    batches finished on `device` (the training device; None: the CPU)."""
    sampler = EpochBatchSampler(
        [r.pid for r in records], cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE,
        cfg.SOLVER.SEED, identity=cfg.DATALOADER.SAMPLER == "softmax_triplet", rank=rank,
        world_size=world_size)
    dataset = TripletDataset(records, TripletTransform(cfg, True), cfg.DATASETS.SKIP_BAD)
    stream = EpochStream(sampler)
    loader = DataLoader(dataset, batch_sampler=stream,
                        collate_fn=Collate(cfg.INPUT.MODALITIES, cfg.INPUT.SIZE_TRAIN),
                        **_loader_kwargs(cfg))
    return TrainLoader(loader, stream, BatchTransform(cfg, True), device)


def build_test_loader(cfg, records, rank=None, world_size=None, device=None):
    """Sequential loader over this rank's contiguous shard, batches finished on `device` (None:
    the CPU); batches carry `index`."""
    shard = shard_range(len(records), rank, world_size)
    ws = comm.get_world_size() if world_size is None else world_size
    batch = max(1, cfg.TEST.IMS_PER_BATCH // ws)
    dataset = TripletDataset(records, TripletTransform(cfg, False), cfg.DATASETS.SKIP_BAD)
    loader = DataLoader(dataset, batch_sampler=BatchSampler(list(shard), batch, drop_last=False),
                        collate_fn=Collate(cfg.INPUT.MODALITIES, cfg.INPUT.SIZE_TEST),
                        **_loader_kwargs(cfg))
    return DeviceLoader(loader, BatchTransform(cfg, False), device)
