"""The feature files of tools/extract_features.py, read by tools/eval_suite.py --features:
<split>_features.npy (N, D) float32, <split>_{pid,camid,sceneid}s.npy (N,) int64, <split>.json."""

import json
import os

import numpy as np


def save_split(out, split, feats, records, meta):
    """Writes <split>_{features,pids,camids,sceneids}.npy and <split>.json under out."""
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, f"{split}_features.npy"), feats.float().numpy())
    for field in ("pid", "camid", "sceneid"):
        arr = np.array([getattr(r, field) for r in records], dtype=np.int64)
        np.save(os.path.join(out, f"{split}_{field}s.npy"), arr)
    paths = {m: [r.files[m] for r in records] for m in records[0].files} if records else {}
    if records and records[0].strip_index:
        meta = {**meta, "strip_index": [r.strip_index for r in records]}
    with open(os.path.join(out, f"{split}.json"), "w") as f:
        json.dump(
            {
                **meta,
                "split": split,
                "num": len(records),
                "dim": int(feats.shape[1]),
                "paths": paths,
            },
            f,
            indent=1,
        )


def load_split(folder, split):
    """-> (features (N, D) float32, {"pid", "camid", "sceneid": (N,) int64}, meta dict)."""
    feats = np.load(os.path.join(folder, f"{split}_features.npy"))
    ids = {
        f: np.load(os.path.join(folder, f"{split}_{f}s.npy")) for f in ("pid", "camid", "sceneid")
    }
    with open(os.path.join(folder, f"{split}.json")) as f:
        meta = json.load(f)
    return feats, ids, meta
