"""SDTPS token-selection pictures of a model: one forward pass over a few records, drawn by
utils.visualize; to PNG files (tools/visualize_tokens.py) or TensorBoard (TEST.VIS_TOKENS)."""

import logging

import numpy as np
import torch

from data import build_test_loader
from utils.visualize import display_images, model_geometry, sdtps_legend, token_figure

logger = logging.getLogger(__name__)


@torch.no_grad()
def token_figures(cfg, model, records, title_fn=None):
    """SDTPS token-selection pictures of `records` (one forward pass) -> list of PIL images.

    model: an eval-capable MultiModalReID with SDTPS; records: data Records (a few).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    geometry, info = model_geometry(model), sdtps_legend(cfg, model)
    figures = []
    try:
        for batch in build_test_loader(cfg, records, rank=0, world_size=1, device=device):
            out = model(batch, return_selection=True)
            sel = out["selection"]
            for b, idx in enumerate(batch["index"].tolist()):
                rec = records[idx]
                one = {m: {k: v[b] for k, v in s.items()} for m, s in sel.items()}
                title = title_fn(rec) if title_fn else f"id {rec.pid}, camera {rec.camid + 1}"
                figures.append(token_figure(display_images(cfg, rec), one, *geometry, info, title))
    finally:
        model.train(was_training)
    return figures


def write_token_maps(cfg, model, records, writer=None, step=None, num=4):
    """TEST.VIS_TOKENS: SDTPS pictures of the first `num` records to TensorBoard (rank 0 only).

    writer: the evaluation's EventWriter, whose TensorBoard files receive the pictures (without
    one nothing is written). Failures are logged, never raised: a picture must not stop an
    evaluation.
    """
    model = getattr(model, "module", model)
    if getattr(model, "sdtps", None) is None or not records:
        return
    try:
        figures = token_figures(cfg, model, list(records[:num]))
        tb = getattr(writer, "_tb", None)
        if tb is None:
            return
        for i, fig in enumerate(figures):
            tb.add_image(f"tokens/sample{i}", np.asarray(fig), step or 0, dataformats="HWC")
        tb.flush()
    except Exception as e:  # noqa: BLE001  (optional picture; the metrics are what matters)
        logger.warning("TEST.VIS_TOKENS: token maps not written: %s", e)
