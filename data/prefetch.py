"""Host batches -> batches on the training device, one batch ahead (docs/ARCHITECTURE.md, `data`).

The plain pipeline's step between the DataLoader and `BatchTransform`: while the model works on
batch i, batch i + 1 is already being copied to the GPU on a stream of its own, so the copy
engine and the SMs work at the same time instead of one after the other on one stream.
"""

import torch


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


def _tensors(batch):
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, dict):
        for v in batch.values():
            yield from _tensors(v)


class DevicePrefetcher:
    """Iterates host batches and yields them on `device` (None: where they are), finished by
    `transform` (a `BatchTransform`).

    On CUDA the next batch's copy is started on a side stream before the current batch is
    handed out. The host batches should be page-locked (DataLoader(pin_memory=True)) for the
    copy to be asynchronous; the pinned host allocator keeps a source block until its copy has
    run. When a batch is handed out, the current (compute) stream waits for the side stream,
    which by then holds only that batch's copy, and each of its device tensors records the
    compute stream, so its memory is not reused by a later copy while the model still reads it.
    """

    def __init__(self, transform, device=None):
        self.transform = transform
        self.device = None if device is None else torch.device(device)
        self.on_cuda = self.device is not None and self.device.type == "cuda"
        self._stream = None

    def __call__(self, batches):
        """A generator over `batches` (an iterable of host batch dicts) on the device."""
        batches = iter(batches)
        upcoming = self._load(next(batches, None))
        while upcoming is not None:
            batch = self._ready(upcoming)
            upcoming = self._load(next(batches, None))
            yield self.transform(batch)

    def _load(self, batch):
        if batch is None or self.device is None:
            return batch
        if not self.on_cuda:
            return to_device(batch, self.device)
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(self._stream):
            return to_device(batch, self.device)

    def _ready(self, batch):
        if self.on_cuda:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_stream(self._stream)
            for t in _tensors(batch):
                t.record_stream(compute)
        return batch
