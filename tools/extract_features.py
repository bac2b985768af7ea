"""Features of a dataset split, or of a folder of triplets, for one return_pattern, as .npy.

    python tools/extract_features.py --config_file configs/RGBNT201/DeMo_SDTPS.yml \
        TEST.WEIGHT output/RGBNT201/DeMo_SDTPS/model_final.pth --split all --pattern 3 --out feats/
    python tools/extract_features.py --config_file X TEST.WEIGHT W --folder triplets/ --out f/

Writes, per split (query, gallery, train; `all` = the three; `folder` for --folder):
`<split>_features.npy` (N, D) float32 pre-normalisation features, `<split>_pids.npy`,
`<split>_camids.npy`, `<split>_sceneids.npy` (N,) int64, and `<split>.json` (image paths per
modality, pattern, TEST.MISS, protocol, the effective config). A folder holds
`{RGB,NI,TI}/<same file names>` (INPUT.MODALITIES); ids and cameras come from names that parse
as the config's dataset, else id -1 and camera 0. `tools/eval_suite.py --features DIR` ranks
query against gallery. Query and gallery are extracted in one pass, as in evaluation.
"""

import importlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import ConfigError  # noqa: E402
from data import Record, build_dataset  # noqa: E402
from data.datasets.base import DATASET_REGISTRY  # noqa: E402
from engine import defaults, extract_features  # noqa: E402
from engine.evaluator import union_records  # noqa: E402
from modeling import build_model, load_weights, select_pattern  # noqa: E402
from utils.safe_load import WeightsFileError, load_file  # noqa: E402

SPLITS = ("query", "gallery", "train")


def parse_args(parser, argv=None):
    """parse_args that also accepts --options after the trailing KEY VALUE pairs (which
    argparse.REMAINDER would otherwise swallow as config overrides)."""
    args = parser.parse_args(argv)
    head = []
    while any(o.startswith("--") for o in args.opts):
        i = next(i for i, o in enumerate(args.opts) if o.startswith("--"))
        head += args.opts[:i]
        args = parser.parse_args(args.opts[i:], namespace=args)
    args.opts = head + args.opts
    return args


def need_weight(cfg):
    if not cfg.TEST.WEIGHT:
        defaults.config_error_exit(ConfigError(
            "TEST.WEIGHT is empty: give the checkpoint, e.g. TEST.WEIGHT output/model_final.pth"))


def checkpoint_sizes(path):
    """(num_classes, num_cameras or None) read from a checkpoint's classifier / SIE shapes."""
    sd = load_file(path, "TEST.WEIGHT")
    sd = sd.get("model", sd) if isinstance(sd, dict) else sd
    classes = next((v.shape[0] for k, v in sd.items() if str(k).endswith("classifier.weight")),
                   None) if isinstance(sd, dict) else None
    if classes is None:
        raise WeightsFileError(f"TEST.WEIGHT {path} holds no classifier weights: not a checkpoint "
                               "of this framework (convert DeMo's with "
                               "tools/convert_demo_checkpoint.py)")
    cams = sd["sie.weight"].shape[0] if "sie.weight" in sd else None
    return classes, cams


def load_model(cfg, device, splits=None):
    """The model of cfg with TEST.WEIGHT loaded, in eval mode. Without `splits` the class and
    camera counts come from the checkpoint (a folder of triplets has no train split)."""
    if splits is not None:
        classes, cams = splits.num_train_pids, splits.num_cameras
    else:
        classes, cams = checkpoint_sizes(cfg.TEST.WEIGHT)
        cams = cams or DATASET_REGISTRY.get(cfg.DATASETS.NAMES).num_cameras
    model = build_model(cfg, classes, cams).to(device)
    load_weights(model, cfg.TEST.WEIGHT, cfg)
    return model.eval()


def folder_records(cfg, folder):
    """Records of DIR/{modality}/<name> triplets (names present in every modality folder)."""
    mods = cfg.INPUT.MODALITIES
    missing = [m for m in mods if not os.path.isdir(os.path.join(folder, m))]
    if missing:
        raise SystemExit(f"{folder}: no {'/'.join(missing)} folder; expected "
                         f"{folder}/{{{','.join(mods)}}}/<same file names>")
    names = sorted(set.intersection(*(set(os.listdir(os.path.join(folder, m))) for m in mods)))
    parse = importlib.import_module(f"data.datasets.{cfg.DATASETS.NAMES.lower()}").parse_name
    records = []
    for name in names:
        try:
            pid, camid, scene = parse(name)
        except ValueError:
            pid, camid, scene = -1, 0, -1
        files = {m: os.path.join(folder, m, name) for m in mods}
        records.append(Record(files, pid, camid, scene, key=files[mods[0]]))
    if not records:
        raise SystemExit(f"{folder}: no file name is present in all of {', '.join(mods)}")
    return records


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
        json.dump({**meta, "split": split, "num": len(records), "dim": int(feats.shape[1]),
                   "paths": paths}, f, indent=1)


def load_split(folder, split):
    """-> (features (N, D) float32, {"pid", "camid", "sceneid": (N,) int64}, meta dict)."""
    feats = np.load(os.path.join(folder, f"{split}_features.npy"))
    ids = {f: np.load(os.path.join(folder, f"{split}_{f}s.npy")) for f in ("pid", "camid",
                                                                           "sceneid")}
    with open(os.path.join(folder, f"{split}.json")) as f:
        meta = json.load(f)
    return feats, ids, meta


def main(argv=None):
    parser = defaults.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--split", default="all", choices=(*SPLITS, "all"))
    parser.add_argument("--folder", default="", help="a folder of triplets instead of a split")
    parser.add_argument("--pattern", type=int, default=0,
                        help="return_pattern 1, 2 or 3 (default TEST.RETURN_PATTERN)")
    parser.add_argument("--out", default="", help="folder for the .npy / .json files (needed)")
    args = parse_args(parser, argv)
    if not args.out:
        parser.error("--out is required")
    cfg = defaults.load_cfg_or_exit(args)
    need_weight(cfg)
    pattern = args.pattern or cfg.TEST.RETURN_PATTERN
    device = defaults.setup(cfg, log_name="features_log.txt")
    if args.folder:
        groups = {"folder": folder_records(cfg, args.folder)}
        model, protocol = load_model(cfg, device), "market"
    else:
        splits = build_dataset(cfg)
        model, protocol = load_model(cfg, device, splits), splits.protocol
        wanted = SPLITS if args.split == "all" else (args.split,)
        groups = {s: getattr(splits, s) for s in wanted}
    if pattern not in model.patterns:
        raise SystemExit(f"--pattern {pattern} is not available; the model has {model.patterns}")
    meta = {"pattern": pattern, "miss": cfg.TEST.MISS, "protocol": protocol,
            "weight": cfg.TEST.WEIGHT, "dataset": cfg.DATASETS.NAMES, "config": cfg.dump()}
    if "query" in groups and "gallery" in groups:  # one pass over their union, as evaluate() does
        records, q_idx, g_idx = union_records(groups["query"], groups["gallery"])
        f = select_pattern(extract_features(cfg, model, records), pattern)
        done = {"query": f[q_idx], "gallery": f[g_idx]}
    else:
        done = {}
    for split, records in groups.items():
        feats = done.get(split)
        if feats is None:
            feats = select_pattern(extract_features(cfg, model, records), pattern)
        save_split(args.out, split, feats, records, meta)
        print(f"{split}: {tuple(feats.shape)} features -> {args.out}/{split}_features.npy")
    return args.out


if __name__ == "__main__":
    main()
