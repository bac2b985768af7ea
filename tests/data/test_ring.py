"""What the ring pipeline (data/ring.py) takes from torch beyond its public API, checked on the
installed torch: when one of these fails after a torch upgrade, the ring needs a look (the plain
pipeline, DATALOADER.PIPELINE plain, does not depend on any of it)."""

import multiprocessing

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from data.ring import SlotBatches, SlotDataset, _end_workers, _page_lock


class Numbers(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor(i)


class CountingBatches:
    """Batches of one index each; `drawn` counts how many the loader has taken."""

    def __init__(self, n):
        self.n, self.drawn = n, 0

    def __len__(self):
        return self.n

    def __iter__(self):
        for i in range(self.n):
            self.drawn += 1
            yield [i]


def _children():
    return {p.pid for p in multiprocessing.active_children()}


def _as_is(batch):
    return batch


def test_end_workers_ends_a_persistent_loaders_workers_now():
    """The persistent iterator sits in DataLoader._iterator and serves every pass; its
    _shutdown_workers() ends the workers at once; a pass after that starts new ones."""
    before = _children()
    loader = DataLoader(Numbers(8), batch_size=2, num_workers=2, persistent_workers=True)
    batches = iter(loader)
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert loader._iterator is batches
    workers = _children() - before
    assert len(workers) == 2
    assert iter(loader) is batches and _children() - before == workers
    _end_workers(loader)
    assert loader._iterator is None and not _children() & workers
    assert [b.tolist() for b in loader][0] == [0, 1]
    again = _children() - before
    assert len(again) == 2 and not again & workers
    _end_workers(loader)
    assert not _children() - before
    _end_workers(loader)  # nothing running: nothing to do


@pytest.mark.parametrize("workers, prefetch", [(0, None), (2, 2), (1, 3)])
def test_a_loader_hands_out_at_most_prefetch_x_workers_batches_ahead(workers, prefetch):
    """BatchRing's size rests on it: when batch k is returned, batches up to k + P x W have been
    handed to the workers, none further (so slot k % (P x W + LAG) is not written again before
    LAG more batches have been received)."""
    sampler = CountingBatches(24)
    kw = {"prefetch_factor": prefetch} if workers else {}
    loader = DataLoader(Numbers(24), batch_sampler=sampler, num_workers=workers, **kw)
    ahead = [sampler.drawn - (k + 1) for k, _ in enumerate(loader)]
    assert len(ahead) == 24
    assert max(ahead) <= workers * (prefetch or 0)
    if workers:
        assert max(ahead) > 0  # the count sees the workers' prefetching


@pytest.mark.parametrize("workers", [0, 2])
def test_getitems_receives_the_batch_samplers_item_as_it_is(workers):
    """SlotDataset gets each (slot, indices) pair of SlotBatches unchanged, in the workers too."""
    batches = SlotBatches(BatchSampler(range(10), 3, drop_last=False), slots=3)
    loader = DataLoader(
        SlotDataset(Numbers(10)), batch_sampler=batches, collate_fn=_as_is, num_workers=workers
    )
    got = [(slot, [int(x) for x in items]) for slot, items in loader]
    assert got == [(0, [0, 1, 2]), (1, [3, 4, 5]), (2, [6, 7, 8]), (0, [9])]


@pytest.mark.skipif(torch.version.cuda is None, reason="a torch built without CUDA")
def test_the_cuda_runtime_binding_has_host_registration():
    """torch.cuda.cudart() returns this binding once CUDA is initialised."""
    assert callable(torch.cuda.cudart)
    binding = torch._C._cudart
    assert callable(binding.cudaHostRegister) and callable(binding.cudaHostUnregister)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (GPU host only)")
def test_page_lock_pins_and_unpins_a_tensor():
    x = torch.zeros(1 << 20, dtype=torch.uint8).share_memory_()
    assert not x.is_pinned()
    unlock = _page_lock(x)
    assert x.is_pinned()
    y = x.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    assert int(y.sum()) == 0
    unlock()
    assert not x.is_pinned()
