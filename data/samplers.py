"""Epoch samplers that emit (record_index, epoch, stream_position) triples in per-rank batches.

The global stream of an epoch is drawn from numpy Generator([SOLVER.SEED, epoch]): identical on
every rank and in every run, so a resumed epoch repeats it. Global batch b covers stream positions
[b * B, (b + 1) * B); rank r takes the contiguous slice r * B / W ... (r + 1) * B / W of it, so the
ranks' shares are disjoint and together make the global P x K batch. The stream position travels
with each index to the dataset, which seeds the sample's augmentation with it (see transforms.py).
"""

from collections import defaultdict

import numpy as np

from utils import comm


class EpochBatchSampler:
    """Batch sampler over `pids` (one per record); `identity=True` gives P x K batches.

    batch_size: the global batch (SOLVER.IMS_PER_BATCH). num_instance: K. identity=False (softmax
    sampler): a plain seeded shuffle. Iterations per epoch: as many global batches as the dataset
    holds (for P x K: sum over ids of max(n, K) rounded down to K, as in DeMo's
    RandomIdentitySampler), fixed for the run so `len()` is exact.
    """

    def __init__(
        self, pids, batch_size, num_instance, seed, identity=True, rank=None, world_size=None
    ):
        self.rank = comm.get_rank() if rank is None else rank
        self.world_size = comm.get_world_size() if world_size is None else world_size
        if batch_size % self.world_size:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH ({batch_size}) must be divisible by the "
                f"world size ({self.world_size})"
            )
        self.batch_size, self.k, self.seed, self.identity = batch_size, num_instance, seed, identity
        self.local = batch_size // self.world_size
        self.epoch = 1
        self.index_of = defaultdict(list)
        for i, p in enumerate(pids):
            self.index_of[int(p)].append(i)
        self.pids = sorted(self.index_of)
        self.num_records = len(pids)
        if identity:
            self.p = batch_size // num_instance
            if self.p > len(self.pids):
                raise ValueError(
                    f"SOLVER.IMS_PER_BATCH / DATALOADER.NUM_INSTANCE = {self.p} ids "
                    f"per batch, but the train split has only {len(self.pids)} ids"
                )
            held = sum(max(len(v), self.k) // self.k * self.k for v in self.index_of.values())
        else:
            held = self.num_records
        self.num_batches = held // batch_size
        if self.num_batches < 1:
            raise ValueError(f"SOLVER.IMS_PER_BATCH ({batch_size}) exceeds the {held} samples")

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return self.num_batches

    def global_stream(self, epoch=None):
        """Record indices of the whole epoch, all ranks: (num_batches * batch_size,) int64."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch])
        need = self.num_batches * self.batch_size
        parts, have = [], 0
        while have < need:
            part = self._pk_round(rng) if self.identity else rng.permutation(self.num_records)
            parts.append(part)
            have += len(part)
        return np.concatenate(parts)[:need]

    def _pk_round(self, rng):
        """One pass of DeMo's identity sampling: K-chunks per id, P distinct ids per batch."""
        chunks = {}
        for pid in self.pids:
            idxs = np.asarray(self.index_of[pid])
            if len(idxs) < self.k:
                idxs = rng.choice(idxs, self.k, replace=True)
            idxs = rng.permutation(idxs)
            chunks[pid] = [idxs[j * self.k : (j + 1) * self.k] for j in range(len(idxs) // self.k)]
        avail = list(self.pids)
        out = []
        while len(avail) >= self.p:
            chosen = rng.choice(len(avail), self.p, replace=False)
            out.extend(chunks[avail[c]].pop() for c in chosen)
            avail = [pid for pid in avail if chunks[pid]]
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def __iter__(self):
        return self.batches(self.epoch)

    def batches(self, epoch):
        """This rank's batches of `epoch`: lists of (record_index, epoch, stream_position)."""
        stream = self.global_stream(epoch)
        for b in range(self.num_batches):
            start = b * self.batch_size + self.rank * self.local
            yield [(int(stream[pos]), epoch, pos) for pos in range(start, start + self.local)]


class EpochStream:
    """The batches of epochs `start`, start + 1, ... of an EpochBatchSampler as one endless batch
    sampler. A DataLoader over it prefetches the next epoch's first batches while the current
    epoch ends, instead of refilling its workers' queues at every epoch start. len() is one
    epoch's; `start` is read when an iteration begins (a DataLoader's pass)."""

    def __init__(self, sampler, start=1):
        self.sampler, self.start = sampler, start

    def __len__(self):
        return len(self.sampler)

    def __iter__(self):
        epoch = self.start
        while True:
            yield from self.sampler.batches(epoch)
            epoch += 1


def shard_range(n, rank=None, world_size=None):
    """Contiguous, disjoint share of range(n) for `rank` (test-time sharding)."""
    rank = comm.get_rank() if rank is None else rank
    world_size = comm.get_world_size() if world_size is None else world_size
    return range(n * rank // world_size, n * (rank + 1) // world_size)
