"""Train and test loaders of batch dicts (docs/ARCHITECTURE.md, `data`).

    dataset (data/dataset.py) -> DataLoader -> device prefetch (data/prefetch.py)
        -> BatchTransform (data/transforms.py) -> model

Batch: {"images": {modality: FloatTensor(B, 3, H, W)}, "pids", "camids", "sceneids", "index":
LongTensor(B), "paths": list[str]}, on the loader's `device` (the CPU when None); training
batches also carry their augmentation draws ("draws", "noise_seed"). `index` is the record's
position in the list given to the builder. Workers decode uint8 pixels and draw the random
numbers; the pixel work runs on the whole batch on `device`.

DATALOADER.PIPELINE picks how the uint8 batches reach the device, with the same batches either
way: `plain`, a standard DataLoader (pinned batches, persistent workers) and a prefetcher that
copies the next batch on a side stream (`PlainLoader`); `ring`, workers writing into a shared
page-locked ring of batch slots (data/ring.py, where every use of torch internals is). Workers
are persistent: started once per loader, they serve every later pass; `close()` ends them. With
DATASETS.SKIP_BAD an unreadable sample is left out of its batch (B shrinks), logged by the
worker, and the train loader logs each epoch's total: nothing is dropped silently.
"""

import logging
from collections import Counter

from torch.utils.data import BatchSampler, DataLoader

from utils import comm

from .dataset import Collate, MultiModalDataset
from .prefetch import DevicePrefetcher
from .ring import ring_loader
from .samplers import EpochBatchSampler, EpochStream, shard_range
from .transforms import BatchTransform, SampleTransform

logger = logging.getLogger(__name__)


class PlainLoader:
    """A standard DataLoader of host batches (`dataset.Collate`: uint8 pixels), each finished on
    `device` by a `DevicePrefetcher` (copy one batch ahead, then the BatchTransform).

    Iterating is `open()`: a new pass over the batch sampler (the previous pass ends; torch's
    persistent workers discard what they still had in flight for it). `close()` ends the pass
    and the workers: the DataLoader is let go, with the iterator that owns them; a later pass
    makes a new one.
    """

    def __init__(self, dataset, batch_sampler, collate, transform, device, cfg):
        self.dataset, self.batch_sampler, self.collate = dataset, batch_sampler, collate
        self.prefetcher = DevicePrefetcher(transform, device)
        workers = cfg.DATALOADER.NUM_WORKERS
        self.kwargs = {"num_workers": workers, "pin_memory": self.prefetcher.on_cuda}
        if workers > 0:
            self.kwargs.update(
                prefetch_factor=cfg.DATALOADER.PREFETCH_FACTOR, persistent_workers=True
            )
        self.loader, self._pass = None, None

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        return self.open()

    def open(self):
        """A new pass: a generator of finished batches."""
        self._end_pass()
        if self.loader is None:
            self.loader = DataLoader(
                self.dataset,
                batch_sampler=self.batch_sampler,
                collate_fn=self.collate,
                **self.kwargs,
            )
        self._pass = self.prefetcher(self.loader)
        return self._pass

    def _end_pass(self):
        if self._pass is not None:
            self._pass.close()  # lets go of the pass's DataLoader iterator
            self._pass = None

    def close(self):
        self._end_pass()
        self.loader = None


class TrainLoader:
    """The training batches of one epoch at a time: call set_epoch(e) (1-based), then iterate.

    source: a PlainLoader or a RingLoader over `stream`. Consecutive epochs are read from one
    stream (samplers.EpochStream), so the workers never stall at an epoch boundary; setting any
    other epoch, or leaving an epoch unfinished, restarts the stream there (with the same
    workers). The batches are the same either way.
    """

    def __init__(self, source, stream):
        self.source, self.stream, self.sampler = source, stream, stream.sampler
        self.epoch, self._batches, self._next_epoch = 1, None, None

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.sampler)

    def __iter__(self):
        if self._batches is None or self._next_epoch != self.epoch:
            self.end_pass()
            self.stream.start = self.epoch
            self._batches = self.source.open()
        self._next_epoch = None  # until this epoch is read to its end
        skipped = 0
        for _ in range(len(self)):
            batch = next(self._batches)
            skipped += self.sampler.local - len(batch["paths"])
            if len(batch["paths"]):
                yield batch
        self._next_epoch = self.epoch + 1
        if skipped:
            logger.warning(
                "epoch %d: %d unreadable samples skipped (DATASETS.SKIP_BAD)", self.epoch, skipped
            )

    def end_pass(self):
        """Stop reading the stream; the workers wait for the next pass."""
        self._batches, self._next_epoch = None, None

    def close(self):
        """End the pass and the workers."""
        self.end_pass()
        self.source.close()


def _loader(cfg, records, is_train, batch_sampler, batch, device):
    """PlainLoader or RingLoader (DATALOADER.PIPELINE) over `records` in the batches of
    `batch_sampler` (of at most `batch` records)."""
    size = tuple(cfg.INPUT.SIZE_TRAIN if is_train else cfg.INPUT.SIZE_TEST)
    dataset = MultiModalDataset(records, SampleTransform(cfg, is_train), cfg.DATASETS.SKIP_BAD)
    transform = BatchTransform(cfg, is_train)
    if cfg.DATALOADER.PIPELINE == "ring":
        return ring_loader(dataset, batch_sampler, batch, size, transform, device, cfg)
    collate = Collate(cfg.INPUT.MODALITIES, size)
    return PlainLoader(dataset, batch_sampler, collate, transform, device, cfg)


def _warn_short_ids(records, k):
    """Say which train ids hold fewer than K = DATALOADER.NUM_INSTANCE triplets, and what the P x K
    sampler does with them (data/samplers.py: their K draws repeat images)."""
    counts = Counter(r.pid for r in records)
    short = sorted((n, pid) for pid, n in counts.items() if n < k)
    if short:
        n, pid = short[0]
        logger.warning(
            "DATALOADER.NUM_INSTANCE %d is above the triplet count of %d of %d train ids (the "
            "smallest: id %d with %d triplets): the sampler draws their %d images of a batch with "
            "replacement, so such an id repeats images within a batch (a different augmentation "
            "each time); lower DATALOADER.NUM_INSTANCE to avoid it",
            k,
            len(short),
            len(counts),
            pid,
            n,
            k,
        )


def build_train_loader(cfg, records, rank=None, world_size=None, device=None):
    """TrainLoader of this rank's IMS_PER_BATCH / world_size share of every global batch, its
    batches finished on `device` (the training device; None: the CPU)."""
    identity = cfg.DATALOADER.SAMPLER == "softmax_triplet"
    if identity and comm.is_main_process():
        _warn_short_ids(records, cfg.DATALOADER.NUM_INSTANCE)
    sampler = EpochBatchSampler(
        [r.pid for r in records],
        cfg.SOLVER.IMS_PER_BATCH,
        cfg.DATALOADER.NUM_INSTANCE,
        cfg.SOLVER.SEED,
        identity=identity,
        rank=rank,
        world_size=world_size,
    )
    stream = EpochStream(sampler)
    return TrainLoader(_loader(cfg, records, True, stream, sampler.local, device), stream)


def build_test_loader(cfg, records, rank=None, world_size=None, device=None):
    """Sequential loader over this rank's contiguous shard, batches finished on `device` (None:
    the CPU); batches carry `index`. Iterate it for a pass; `close()` ends its workers."""
    shard = shard_range(len(records), rank, world_size)
    ws = comm.get_world_size() if world_size is None else world_size
    batch = max(1, cfg.TEST.IMS_PER_BATCH // ws)
    sampler = BatchSampler(list(shard), batch, drop_last=False)
    return _loader(cfg, records, False, sampler, batch, device)
