"""The diagnostic behind 2026-11-22-s3-*-loader-diag.log: the test loader's rate without a model.

    python3 docs/bench/2026-11-22-s3-loader-diag.py /tmp/bench     (on the GPU host, repo root)

12,000 triplets of the full-size synthetic RGBNT201 (train + gallery records, repeated), DeMo's
config, 14 workers unless noted, batch 128; the first batch is not timed.
"""

import os
import sys
import time

sys.path.insert(0, os.getcwd())

import torch  # noqa: E402
from torch.utils.data import BatchSampler, DataLoader  # noqa: E402

from config import load_config  # noqa: E402
from data import build_dataset  # noqa: E402
from data.build import Collate, DeviceLoader, TripletDataset, build_test_loader  # noqa: E402
from data.transforms import BatchTransform, TripletTransform  # noqa: E402

cfg = load_config("configs/RGBNT201/DeMo.yml",
                  ["DATASETS.ROOT_DIR", sys.argv[1], "DATALOADER.NUM_WORKERS", "14"])
splits = build_dataset(cfg)
records = list(splits.train) + list(splits.gallery)
records = (records * (12000 // len(records) + 1))[:12000]
dev = torch.device("cuda")
torch.zeros(1, device=dev)


def run(label, loader):
    it = iter(loader)
    next(it)
    torch.cuda.synchronize()
    t, k = time.perf_counter(), 0
    for b in it:
        k += len(b["paths"])
    torch.cuda.synchronize()
    print(f"{label}: {k / (time.perf_counter() - t):.0f} triplets/s", flush=True)


def raw(pin, workers=14, bs=128):
    ds = TripletDataset(records, TripletTransform(cfg, False))
    return DataLoader(ds, batch_sampler=BatchSampler(range(len(records)), bs, False),
                      collate_fn=Collate(cfg.INPUT.MODALITIES, cfg.INPUT.SIZE_TEST),
                      num_workers=workers, pin_memory=pin, persistent_workers=True,
                      prefetch_factor=4)


run("test loader as built (pinned, H2D, normalise on GPU)",
    build_test_loader(cfg, records, device=dev))
run("raw DataLoader, no pinning, stays on CPU", raw(False))
run("raw DataLoader, pinned, stays on CPU", raw(True))
run("raw, no pinning, blocking H2D + normalise",
    DeviceLoader(raw(False), BatchTransform(cfg, False), dev))
run("raw, 15 workers, no pinning, stays on CPU", raw(False, 15))
run("raw, batch 32, no pinning, on CPU", raw(False, 14, 32))
