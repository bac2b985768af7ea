"""Time to the first batch of a 14-worker DataLoader, by the parent's resident memory and the
start method (session 4, on the project's 2-core CPU machine; figures in docs/PERFORMANCE.md).

    python docs/bench/2026-11-22-s4-fork-startup.py GIB      # e.g. 0 and 6
"""

import sys
import time

import torch
from torch.utils.data import DataLoader, Dataset


class Indices(Dataset):
    def __len__(self):
        return 10_000

    def __getitem__(self, i):
        return i


if __name__ == "__main__":
    gib = int(sys.argv[1])
    resident = torch.ones(gib * 2**30 // 4)  # allocated and touched: in the page tables
    for context in ("fork", "forkserver"):
        for rep in range(2):
            t = time.perf_counter()
            batches = iter(DataLoader(Indices(), batch_size=128, num_workers=14,
                                      multiprocessing_context=context))
            next(batches)
            print(f"{context} rep {rep}: first batch {time.perf_counter() - t:.3f} s "
                  f"(parent holding {gib} GiB)", flush=True)
            del batches
