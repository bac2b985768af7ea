"""The demo: synthetic RGBNT201 -> untrained evaluation -> training -> evaluation, for the tiny
DeMo and DeMo_SDTPS configs, then a missing-modality check. Runs on the CPU.

    python tools/demo.py [--root datasets_synth] [--out output/demo] [KEY VALUE ...]

It uses the same code path as train_net.py / test_net.py (data.build_dataset, modeling.build_model,
engine.Trainer, engine.evaluate); the trailing KEY VALUE pairs override both configs.
"""

import argparse
import functools
import logging
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import load_config  # noqa: E402
from data import build_dataset, build_train_loader  # noqa: E402
from data.synthetic import make_synthetic, read_params  # noqa: E402
from engine import Trainer, evaluate  # noqa: E402
from engine.defaults import setup  # noqa: E402
from modeling import build_model  # noqa: E402

logger = logging.getLogger("demo")
CONFIGS = ("configs/_smoke/DeMo.yml", "configs/_smoke/DeMo_SDTPS.yml")
DEMO_SCALE = 0.25  # of the real train split: 43 ids / ~1,000 triplets
DEMO_TEST_IDS = 30  # the real test split's ids: enough identities to share each single cue


def with_opts(cfg, **kv):
    cfg = cfg.clone()
    cfg.defrost()
    for key, value in kv.items():
        node, *path = key.split(".")
        target = cfg[node]
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value
    cfg.freeze()
    return cfg


def run(config_file, root, out, opts):
    name = os.path.splitext(os.path.basename(config_file))[0]
    cfg = load_config(
        config_file, ["DATASETS.ROOT_DIR", root, "OUTPUT_DIR", os.path.join(out, name), *opts]
    )
    # The demo owns its run folders: a rerun starts them afresh instead of mixing two runs' files.
    if os.path.isdir(cfg.OUTPUT_DIR):
        shutil.rmtree(cfg.OUTPUT_DIR)
    device = setup(cfg)
    splits = build_dataset(cfg)
    model = build_model(cfg, splits.num_train_pids, splits.num_cameras).to(device)
    before = evaluate(cfg, model, splits)
    start = time.perf_counter()
    trainer = Trainer(
        cfg,
        model,
        build_train_loader(cfg, splits.train, device=device),
        functools.partial(evaluate, cfg, splits=splits),
    )
    after = trainer.train()
    seconds = time.perf_counter() - start
    miss = {
        m: evaluate(with_opts(cfg, **{"TEST.MISSING_MODALITIES": (m,)}), model, splits)[3]["mAP"]
        for m in cfg.INPUT.MODALITIES
    }
    return name, before, after, miss, seconds


def report(rows):
    lines = [
        "",
        "Demo results on the synthetic RGBNT201 test set (mAP / Rank-1 / Rank-5 / Rank-10, %)",
        "| config | pattern | untrained | trained |",
        "| --- | --- | --- | --- |",
    ]

    def fmt(m):
        return " / ".join(f"{m[k]:5.1f}" for k in ("mAP", "R1", "R5", "R10"))

    for name, before, after, _, _ in rows:
        for p in after:
            lines.append(f"| {name} | {p} | {fmt(before[p])} | {fmt(after[p])} |")
    lines += [
        "",
        "Pattern-3 mAP with one modality zeroed (TEST.MISSING_MODALITIES):",
        "| config | all | " + " | ".join(f"no {m}" for m in rows[0][3]) + " | train time |",
        "| --- | --- | " + "--- | " * len(rows[0][3]) + "--- |",
    ]
    for name, _, after, miss, seconds in rows:
        lines.append(
            f"| {name} | {after[3]['mAP']:.1f} | "
            + " | ".join(f"{v:.1f}" for v in miss.values())
            + f" | {seconds:.0f} s |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", default="datasets_synth", help="dataset root (generated if missing)")
    p.add_argument("--out", default="output/demo", help="run folders go below this")
    p.add_argument("--scale", type=float, default=DEMO_SCALE, help="synthetic set size")
    p.add_argument(
        "--config",
        action="append",
        dest="configs",
        metavar="FILE",
        help=f"config to run (repeatable; default: {' and '.join(CONFIGS)})",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every config")
    args = p.parse_args(argv)
    args.configs = args.configs or list(CONFIGS)
    if not os.path.isdir(os.path.join(args.root, "RGBNT201")):
        print(f"generating a synthetic RGBNT201 set in {args.root} (scale {args.scale}) ...")
        make_synthetic(args.root, "RGBNT201", scale=args.scale, test_ids=DEMO_TEST_IDS)
    else:  # a set made before (or another one: say which)
        made = read_params(args.root, "RGBNT201")
        print(
            f"using {args.root}/RGBNT201 ({'synthetic: ' + str(made) if made else 'not synthetic'})"
        )
    rows = [run(c, args.root, args.out, args.opts) for c in args.configs]
    print(report(rows))
    return rows


if __name__ == "__main__":
    main()
