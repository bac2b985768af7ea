"""Records -> sample dicts -> host batches of uint8 pixels (docs/ARCHITECTURE.md, `data`).

A sample is one record's decoded pixels and the random draws of its augmentation
(`transforms.SampleTransform`), computed in a loader worker. `Collate` stacks samples into the
host batch that the plain pipeline's DataLoader yields; the ring pipeline (data/ring.py) writes
the same pixels into its shared slots instead and shares `label_fields`.
"""

import logging

import torch
from torch.utils.data import Dataset, default_collate

from .datasets import DatasetError
from .transforms import NOISE_SEED, read_pixels

logger = logging.getLogger(__name__)


class MultiModalDataset(Dataset):
    """Records -> sample dicts; an item is a record index or (index, epoch, stream_position).

    A sample: {"images": {modality: uint8 (3, H, W), H x W x 3 in memory}, "draws":
    LongTensor(M, N_DRAWS) or None at test time, "pid", "camid", "sceneid", "index": int, "path":
    str}. With `skip_bad`, an unreadable record gives None (logged here, in the worker) and its
    batch goes on without it.
    """

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


def label_fields(samples):
    """Everything of a batch but its pixels: "pids", "camids", "sceneids", "index" LongTensor(B),
    "paths" list[str]; training batches also "draws" (B, M, N_DRAWS) and "noise_seed" (an int,
    the seed of the batch's erasing noise)."""

    def longs(key):
        return torch.tensor([s[key] for s in samples], dtype=torch.long)

    batch = {
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


class Collate:
    """Sample dicts (None: skipped) -> a host batch: `label_fields` and "images" {modality: uint8
    (B, 3, H, W)}, H x W x 3 in memory as the decoders write it and `BatchTransform` reads it.
    An all-skipped batch has B = 0 (and no "draws")."""

    def __init__(self, modalities, size):
        self.modalities, self.size = tuple(modalities), tuple(size)

    def __call__(self, samples):
        samples = [s for s in samples if s is not None]
        images = {}
        for m in self.modalities:
            if samples:
                # default_collate stacks straight into shared memory in a worker: the batch
                # then crosses to the main process without another copy
                hwc = default_collate([s["images"][m].permute(1, 2, 0) for s in samples])
            else:
                hwc = torch.empty((0, *self.size, 3), dtype=torch.uint8)
            images[m] = hwc.permute(0, 3, 1, 2)
        # "images" first: torch.compile's guards see the batch dict's key order, and with
        # "images" elsewhere the evaluator's padded last batch ({"images", "camids"}) compiled a
        # second graph
        return {"images": images, **label_fields(samples)}
