"""SDTPS token-selection pictures: which patches each modality keeps and how the aggregation
weighs them, for N test triplets (query split) spread over identities, then cameras.

    python tools/visualize_tokens.py --config_file configs/RGBNT201/DeMo_SDTPS.yml \
        TEST.WEIGHT output/RGBNT201/DeMo_SDTPS/model_final.pth [--num 8] [--out DIR]

One PNG per triplet (default OUTPUT_DIR/vis_tokens/): the modalities side by side, top row kept
patches bright and outlined, dropped ones dimmed; bottom row the aggregation weight each patch
receives, summed over the N_c aggregated tokens; a legend with K, N_c, beta and N.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data import build_dataset  # noqa: E402
from engine import defaults  # noqa: E402
from engine.token_maps import token_figures  # noqa: E402
from utils.visualize import save_figures, spread_indices  # noqa: E402


def main(argv=None):
    parser = defaults.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=8, help="number of test triplets")
    parser.add_argument("--out", default="", help="folder (default OUTPUT_DIR/vis_tokens)")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f"--num {args.num}: give at least 1")
    cfg = defaults.load_cfg_or_exit(args)
    if not cfg.MODEL.USE_SDTPS:
        sys.exit(
            f"{args.config_file or 'this config'} has no SDTPS head (MODEL.USE_SDTPS False): "
            "there is no token selection to show; use a DeMo_SDTPS config"
        )
    defaults.need_weight(cfg)
    out = args.out or os.path.join(cfg.OUTPUT_DIR, "vis_tokens")
    device = defaults.setup(cfg, log_name="vis_log.txt")
    splits = build_dataset(cfg)
    model = defaults.load_model(cfg, device, splits)
    records = [splits.query[i] for i in spread_indices(splits.query, args.num)]
    paths = save_figures(token_figures(cfg, model, records), records, out, cfg.INPUT.MODALITIES[0])
    print(f"{len(paths)} token-selection pictures written to {out}")
    return paths


if __name__ == "__main__":
    defaults.run_cli(main)
