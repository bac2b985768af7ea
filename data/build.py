"""Train and test loaders of batch dicts (docs/ARCHITECTURE.md, `data`).

Batch: {"images": {modality: FloatTensor(B, 3, H, W)}, "pids", "camids", "sceneids", "index":
LongTensor(B), "paths": list[str]}, on the loader's `device` (the CPU when None). `index` is the
record's position in the list given to the builder. Workers decode into the uint8 slots of a
shared `BatchRing` and hand over the rest (labels, augmentation draws "draws" / "noise_seed");
the loader copies the pixels to `device` straight from the ring (on a GPU: page-locked memory,
copied on a side stream, so the copy overlaps the model's work on the previous batch) and
finishes the pixel work there (data/transforms.py). The workers are persistent: started once per
loader, they serve every later pass. With DATASETS.SKIP_BAD an unreadable sample is left out of
its batch (B shrinks), logged by the worker, and the train loader logs each epoch's total: nothing
is dropped silently.
"""

import logging
import math
import weakref
from collections import Counter, deque

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

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
        return {
            "images": pixels,
            "draws": draws,
            "pid": rec.pid,
            "camid": rec.camid,
            "sceneid": rec.sceneid,
            "index": idx,
            "path": rec.key,
        }

    def __getitems__(self, batch):
        """A (slot, items) batch of `SlotBatches` -> (slot, sample dicts), for `Collate`."""
        slot, items = batch
        return slot, [self[item] for item in items]


class BatchRing:
    """Shared uint8 slots (S, M, B, H, W, 3) that the loader's workers collate batches into.

    The main process reads a batch's pixels where the worker wrote them: no shared-memory file
    is made, mapped and faulted in per batch, and on CUDA (`pin`: the ring page-locked once) no
    copy into pinned memory precedes the copy to the GPU. Batch k of a pass goes to slot k % S.
    A DataLoader hands out batch k + P * W when it returns batch k (P: prefetch factor, W:
    workers), so with S = P * W + LAG the slot of a returned batch is written again only after
    LAG more batches have been received: its consumer (`DeviceLoader`) has that long to copy
    it out.
    """

    LAG = 2

    def __init__(self, slots, modalities, batch, size):
        self.modalities = tuple(modalities)
        shape = (slots, len(self.modalities), batch, *size, 3)
        try:
            self.pixels = torch.empty(shape, dtype=torch.uint8).share_memory_()
        except RuntimeError as e:
            gib = math.prod(shape) / 2**30
            raise RuntimeError(
                f"the loader's batch ring ({slots} slots = DATALOADER.PREFETCH_FACTOR x "
                f"DATALOADER.NUM_WORKERS + {self.LAG}, of {batch} triplets at {size[0]}x{size[1]}: "
                f"{gib:.2f} GiB) does not fit in shared memory (/dev/shm; in Docker, "
                "--shm-size): lower those settings or the batch size"
            ) from e
        self._unpin = None

    def __len__(self):
        return self.pixels.shape[0]

    def write(self, slot, samples):
        """Stack the samples' images ({modality: (3, H, W)}, H x W x 3 in memory) into `slot`."""
        for i, m in enumerate(self.modalities):
            torch.stack(
                [s["images"][m].permute(1, 2, 0) for s in samples],
                out=self.pixels[slot, i, : len(samples)],
            )

    def images(self, slot, n):
        """{modality: uint8 (n, 3, H, W)}: views of the slot, H x W x 3 in memory."""
        return {
            m: self.pixels[slot, i, :n].permute(0, 3, 1, 2) for i, m in enumerate(self.modalities)
        }

    def pin(self):
        """Page-lock the ring for direct, asynchronous copies to the GPU. Only while its workers
        exist: a worker forked from a process with locked pages need not see them."""
        if self._unpin is not None:
            return
        cudart, ptr = torch.cuda.cudart(), self.pixels.data_ptr()
        err = int(cudart.cudaHostRegister(ptr, self.pixels.nbytes, 1))  # 1: portable
        if err:
            raise RuntimeError(
                f"page-locking the loader's {self.pixels.nbytes / 2**30:.2f} GiB "
                f"batch ring failed (CUDA error {err})"
            )
        self._unpin = weakref.finalize(self.pixels, cudart.cudaHostUnregister, ptr)

    def unpin(self):
        if self._unpin is not None:
            self._unpin()
            self._unpin = None


class SlotBatches:
    """A batch sampler's batches numbered into the slots of a `BatchRing`: (slot, batch)."""

    def __init__(self, batch_sampler, slots):
        self.batch_sampler, self.slots = batch_sampler, slots

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        for k, batch in enumerate(self.batch_sampler):
            yield k % self.slots, batch


class Collate:
    """(slot, sample dicts (None = skipped)) -> one batch dict, its images written into the ring's
    slot: batch["images"] is that slot's number until `DeviceLoader` puts the pixels there. An
    all-skipped batch has B = 0. Training batches also carry "draws" (B, M, N_DRAWS) and
    "noise_seed" (an int)."""

    def __init__(self, ring):
        self.ring = ring

    def __call__(self, slot_samples):
        slot, samples = slot_samples
        samples = [s for s in samples if s is not None]
        if samples:
            self.ring.write(slot, samples)

        def longs(key):
            return torch.tensor([s[key] for s in samples], dtype=torch.long)

        batch = {
            "images": slot,
            "pids": longs("pid"),
            "camids": longs("camid"),
            "sceneids": longs("sceneid"),
            "index": longs("index"),
            "paths": [s["path"] for s in samples],
        }
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
    """Iterates a DataLoader of ring batches (`Collate`) and finishes each batch on `device`
    (None: the CPU): a non-blocking copy of the uint8 pixels out of the ring, then the
    BatchTransform. The DataLoader's workers are persistent: forked at the first pass, they serve
    every later one; `close()` ends them.

    On CUDA the ring is page-locked once the workers exist, and the copy runs on a stream
    of its own, which the current stream then waits for: the copy engine moves batch i + 1 while
    the SMs still run the model on batch i, instead of queueing behind it on one stream. Before a
    batch is received, the copy of the one BatchRing.LAG batches earlier (whose slot the
    DataLoader may hand out again) is waited for.
    """

    def __init__(self, loader, ring, transform, device=None):
        self.loader, self.ring, self.transform = loader, ring, transform
        self.device = None if device is None else torch.device(device)
        self._copy_stream = None
        self._copies = deque()  # per received batch: its copy's event (None: none on a GPU)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        batches = self._start()
        while True:
            try:
                batch = self._receive(batches)
            except StopIteration:
                return
            yield self.finish(batch)

    def _start(self):
        """A new pass over the DataLoader; earlier copies out of the ring are finished first."""
        self._wait_copies(0)
        batches = iter(self.loader)
        if self._on_cuda():
            self.ring.pin()
        return batches

    def _receive(self, batches):
        self._wait_copies(BatchRing.LAG - 1)
        batch = next(batches)
        self._copies.append(None)
        return batch

    def _wait_copies(self, keep):
        while len(self._copies) > keep:
            event = self._copies.popleft()
            if event is not None:
                event.synchronize()

    def _on_cuda(self):
        return self.device is not None and self.device.type == "cuda"

    def finish(self, batch):
        batch = dict(batch, images=self.ring.images(batch["images"], len(batch["paths"])))
        if self.device is not None:
            batch = self._copy(batch)
        # on the CPU the transform copies the pixels out of the ring (normalised floats)
        return self.transform(batch)

    def _copy(self, batch):
        if not self._on_cuda():
            return to_device(batch, self.device)
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(self.device)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            batch = to_device(batch, self.device, used_on=compute)
            self._copies[-1] = torch.cuda.Event()
            self._copies[-1].record()
        compute.wait_stream(self._copy_stream)
        return batch

    def close(self):
        """End the DataLoader's workers and unlock the ring; a later pass starts new workers
        (and locks the ring again once they exist)."""
        self._wait_copies(0)
        batches = getattr(self.loader, "_iterator", None)
        if batches is not None:
            self.loader._iterator = None
            batches._shutdown_workers()
        self.ring.unpin()


class TrainLoader(DeviceLoader):
    """The training batches of one epoch at a time: call set_epoch(e) (1-based), then iterate.

    Consecutive epochs are read from one stream (samplers.EpochStream), so the workers never
    stall at an epoch boundary; setting any other epoch, or leaving an epoch unfinished, restarts
    the stream there (with the same workers). The batches are the same either way.
    """

    def __init__(self, loader, stream, ring, transform, device=None):
        super().__init__(loader, ring, transform, device)
        self.stream, self.sampler = stream, stream.sampler
        self.epoch, self._batches, self._next_epoch = 1, None, None

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.sampler)

    def __iter__(self):
        if self._batches is None or self._next_epoch != self.epoch:
            self.end_pass()
            self.stream.start, self.stream.closed = self.epoch, False
            self._batches = self._start()
        self._next_epoch = None  # until this epoch is read to its end
        skipped = 0
        for _ in range(len(self)):
            batch = self._receive(self._batches)
            skipped += self.sampler.local - len(batch["paths"])
            if len(batch["paths"]):
                yield self.finish(batch)
        self._next_epoch = self.epoch + 1
        if skipped:
            logger.warning(
                "epoch %d: %d unreadable samples skipped (DATASETS.SKIP_BAD)", self.epoch, skipped
            )

    def end_pass(self):
        """Stop the stream and read out the batches the workers already have in flight; the
        workers then wait for the next pass."""
        batches, self._batches, self._next_epoch = self._batches, None, None
        if batches is None:
            return
        self.stream.closed = True
        try:
            for _ in batches:
                pass
        except Exception as e:  # a broken worker: nothing more to read
            logger.debug("ending the train loader's pass: %s", e)

    def close(self):
        """End the pass and the workers."""
        self.end_pass()
        super().close()


def _ring_loader(cfg, dataset, batch_sampler, batch, size):
    """(DataLoader of ring batches, its BatchRing) over `batch_sampler` (batches of <= `batch`)."""
    workers = cfg.DATALOADER.NUM_WORKERS
    kw, in_flight = {"num_workers": workers}, 0
    if workers > 0:
        # No pin_memory: the ring is page-locked itself (and pinned persistent workers would
        # hold the exit, pytorch/pytorch#81794). Persistent workers: the ring may only be locked
        # once they exist, and each pass (an evaluation, a restarted stream) reuses them.
        kw.update(prefetch_factor=cfg.DATALOADER.PREFETCH_FACTOR, persistent_workers=True)
        in_flight = workers * cfg.DATALOADER.PREFETCH_FACTOR
    ring = BatchRing(in_flight + BatchRing.LAG, cfg.INPUT.MODALITIES, batch, size)
    loader = DataLoader(
        dataset, batch_sampler=SlotBatches(batch_sampler, len(ring)), collate_fn=Collate(ring), **kw
    )
    return loader, ring


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
    dataset = TripletDataset(records, TripletTransform(cfg, True), cfg.DATASETS.SKIP_BAD)
    stream = EpochStream(sampler)
    loader, ring = _ring_loader(cfg, dataset, stream, sampler.local, cfg.INPUT.SIZE_TRAIN)
    return TrainLoader(loader, stream, ring, BatchTransform(cfg, True), device)


def build_test_loader(cfg, records, rank=None, world_size=None, device=None):
    """Sequential loader over this rank's contiguous shard, batches finished on `device` (None:
    the CPU); batches carry `index`."""
    shard = shard_range(len(records), rank, world_size)
    ws = comm.get_world_size() if world_size is None else world_size
    batch = max(1, cfg.TEST.IMS_PER_BATCH // ws)
    dataset = TripletDataset(records, TripletTransform(cfg, False), cfg.DATASETS.SKIP_BAD)
    loader, ring = _ring_loader(
        cfg, dataset, BatchSampler(list(shard), batch, drop_last=False), batch, cfg.INPUT.SIZE_TEST
    )
    return DeviceLoader(loader, ring, BatchTransform(cfg, False), device)
