"""The ring pipeline (DATALOADER.PIPELINE ring): DataLoader workers write each batch's pixels into
a slot of one shared, page-locked ring, and the loader copies them to the device from there.

Against the plain pipeline (a DataLoader with pin_memory, then data/prefetch.py) it saves, per
batch, the shared-memory file a worker makes, maps and faults in for its result and the copy of
the pixels into pinned memory that precedes the copy to the GPU. Those savings need what torch
does not offer publicly, and every such use is in this module (tests/data/test_ring.py checks
each on the installed torch):
- the persistent DataLoader's iterator and its workers: `DataLoader._iterator` and
  `_MultiProcessingDataLoaderIter._shutdown_workers()` end the workers when asked
  (`_end_workers`), not whenever the iterator is garbage collected;
- page-locking memory torch did not allocate: `cudaHostRegister` / `cudaHostUnregister` through
  `torch.cuda.cudart()` (`_page_lock`);
- how far a DataLoader runs ahead: when it returns batch k it has handed out batches up to
  k + P x W (P: prefetch factor, W: workers), which sizes the ring (`BatchRing`);
- a dataset's `__getitems__` receives the batch sampler's item as it is (a (slot, indices) pair).
"""

import logging
import math
import weakref
from collections import deque

import torch
from torch.utils.data import DataLoader, Dataset

from .dataset import label_fields
from .prefetch import to_device

logger = logging.getLogger(__name__)


def _end_workers(loader):
    """End the workers of a persistent-worker DataLoader now (a later pass starts new ones)."""
    batches = getattr(loader, "_iterator", None)
    if batches is not None:
        loader._iterator = None
        batches._shutdown_workers()


def _page_lock(tensor):
    """Page-lock `tensor`'s memory for asynchronous copies to the GPU; returns the finalizer
    that unlocks it (called at the latest when the tensor is freed)."""
    cudart, ptr = torch.cuda.cudart(), tensor.data_ptr()
    err = int(cudart.cudaHostRegister(ptr, tensor.nbytes, 1))  # 1: portable
    if err:
        raise RuntimeError(
            f"page-locking the loader's {tensor.nbytes / 2**30:.2f} GiB "
            f"batch ring failed (CUDA error {err})"
        )
    return weakref.finalize(tensor, cudart.cudaHostUnregister, ptr)


class BatchRing:
    """Shared uint8 slots (S, M, B, H, W, 3) that the loader's workers collate batches into.

    The main process reads a batch's pixels where the worker wrote them: no shared-memory file
    is made, mapped and faulted in per batch, and on CUDA (`pin`: the ring page-locked once) no
    copy into pinned memory precedes the copy to the GPU. Batch k of a pass goes to slot k % S.
    A DataLoader hands out batch k + P * W when it returns batch k (P: prefetch factor, W:
    workers), so with S = P * W + LAG the slot of a returned batch is written again only after
    LAG more batches have been received: its consumer (`RingLoader`) has that long to copy
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
                "--shm-size): lower those settings or the batch size, or use "
                "DATALOADER.PIPELINE plain"
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
        if self._unpin is None:
            self._unpin = _page_lock(self.pixels)

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


class SlotDataset(Dataset):
    """A `MultiModalDataset` read a (slot, items) batch of `SlotBatches` at a time."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitems__(self, batch):
        """(slot, items) -> (slot, sample dicts), for `SlotCollate`."""
        slot, items = batch
        return slot, [self.dataset[item] for item in items]


class SlotCollate:
    """(slot, sample dicts (None = skipped)) -> one batch dict (`dataset.label_fields`), its
    images written into the ring's slot: batch["images"] is that slot's number until
    `RingLoader` puts the pixels there. An all-skipped batch has B = 0."""

    def __init__(self, ring):
        self.ring = ring

    def __call__(self, slot_samples):
        slot, samples = slot_samples
        samples = [s for s in samples if s is not None]
        if samples:
            self.ring.write(slot, samples)
        # "images" first, as in the plain pipeline's batches (dataset.Collate says why)
        return {"images": slot, **label_fields(samples)}


class RingLoader:
    """Iterates a DataLoader of ring batches (`SlotCollate`) and finishes each batch on `device`
    (None: the CPU): a non-blocking copy of the uint8 pixels out of the ring, then the
    BatchTransform. The DataLoader's workers are persistent: forked at the first pass, they serve
    every later one; `close()` ends them.

    On CUDA the ring is page-locked once the workers exist, and the copy runs on a stream
    of its own, which the current stream then waits for: the copy engine moves batch i + 1 while
    the SMs still run the model on batch i, instead of queueing behind it on one stream. Before a
    batch is received, the copy of the one BatchRing.LAG batches earlier (whose slot the
    DataLoader may hand out again) is waited for.

    Iterating is `open()`: a new pass over the batch sampler (torch's persistent workers discard
    what they still had in flight for the previous one); `close()` ends the workers.
    """

    def __init__(self, loader, ring, transform, device=None):
        self.loader, self.ring, self.transform = loader, ring, transform
        self.device = None if device is None else torch.device(device)
        self._copy_stream = None
        self._copies = deque()  # per received batch: its copy's event (None: none on a GPU)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return self.open()

    def open(self):
        """A new pass (started at the first next()): a generator of finished batches."""
        batches = self._start()
        while True:
            self._wait_copies(BatchRing.LAG - 1)
            batch = next(batches, None)
            if batch is None:
                return
            self._copies.append(None)
            yield self.finish(batch)

    def _start(self):
        """A new pass over the DataLoader; earlier copies out of the ring are finished first."""
        self._wait_copies(0)
        batches = iter(self.loader)
        if self._on_cuda():
            self.ring.pin()
        return batches

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
        """End the DataLoader's workers and unlock the ring; a later pass starts new workers (and
        locks the ring again once they exist)."""
        self._wait_copies(0)
        _end_workers(self.loader)
        self.ring.unpin()


def ring_loader(dataset, batch_sampler, batch, size, transform, device, cfg):
    """RingLoader over `dataset` (a MultiModalDataset) in the batches of `batch_sampler` (of at
    most `batch` records at `size` = (H, W))."""
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
        SlotDataset(dataset),
        batch_sampler=SlotBatches(batch_sampler, len(ring)),
        collate_fn=SlotCollate(ring),
        **kw,
    )
    return RingLoader(loader, ring, transform, device)
