"""Features of a dataset split, or of a folder of triplets, for one return_pattern, as .npy.

    python tools/extract_features.py --config_file configs/RGBNT201/DeMo_SDTPS.yml \
        TEST.WEIGHT output/RGBNT201/DeMo_SDTPS/model_final.pth --split all --pattern 3 --out feats/
    python tools/extract_features.py --config_file X TEST.WEIGHT W --folder triplets/ --out f/

Writes, per split (query, gallery, train; `all` = the three; `folder` for --folder):
`<split>_features.npy` (N, D) float32 pre-normalisation features, `<split>_pids.npy`,
`<split>_camids.npy`, `<split>_sceneids.npy` (N,) int64, and `<split>.json` (image paths per
modality, pattern, the missing modalities, protocol, the effective config). A folder holds
`{RGB,NI,TI}/<same file names>` (INPUT.MODALITIES); ids and cameras come from names that parse
as the config's dataset, else id -1 and camera 0. `tools/eval_suite.py --features DIR` ranks
query against gallery. Query and gallery are extracted in one pass, as in evaluation.
"""

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data import Record, build_dataset  # noqa: E402
from engine import defaults, extract_features  # noqa: E402
from engine.evaluator import missing_modalities, union_records  # noqa: E402
from modeling import select_pattern  # noqa: E402
from utils.feature_files import save_split  # noqa: E402

SPLITS = ("query", "gallery", "train")


def folder_records(cfg, folder):
    """Records of DIR/{modality}/<name> triplets (names present in every modality folder)."""
    mods = cfg.INPUT.MODALITIES
    missing = [m for m in mods if not os.path.isdir(os.path.join(folder, m))]
    if missing:
        raise SystemExit(
            f"{folder}: no {'/'.join(missing)} folder; expected "
            f"{folder}/{{{','.join(mods)}}}/<same file names>"
        )
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


def main(argv=None):
    parser = defaults.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--split", default="all", choices=(*SPLITS, "all"))
    parser.add_argument("--folder", default="", help="a folder of triplets instead of a split")
    parser.add_argument(
        "--pattern",
        type=int,
        default=0,
        help="return_pattern 1, 2 or 3 (default TEST.RETURN_PATTERN)",
    )
    parser.add_argument("--out", default="", help="folder for the .npy / .json files (needed)")
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("--out is required")
    cfg = defaults.load_cfg_or_exit(args)
    defaults.need_weight(cfg)
    pattern = args.pattern or cfg.TEST.RETURN_PATTERN
    device = defaults.setup(cfg, log_name="features_log.txt")
    if args.folder:
        groups = {"folder": folder_records(cfg, args.folder)}
        model, protocol = defaults.load_model(cfg, device), "market"
    else:
        splits = build_dataset(cfg)
        model, protocol = defaults.load_model(cfg, device, splits), splits.protocol
        wanted = SPLITS if args.split == "all" else (args.split,)
        groups = {s: getattr(splits, s) for s in wanted}
    if pattern not in model.patterns:
        raise SystemExit(f"--pattern {pattern} is not available; the model has {model.patterns}")
    meta = {
        "pattern": pattern,
        "missing_modalities": missing_modalities(cfg),
        "protocol": protocol,
        "weight": cfg.TEST.WEIGHT,
        "dataset": cfg.DATASETS.NAMES,
        "config": cfg.dump(),
    }
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
    defaults.run_cli(main)
