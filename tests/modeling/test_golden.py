"""The proof that our DeMo is DeMo, and our SDTPS is the seeds': features from their own code."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from config import load_config
from modeling import build_model, load_weights, select_pattern
from modeling.fusion.sdtps import MultiModalSDTPS

from .conftest import REPO


def _recipe(golden_dir):
    spec = importlib.util.spec_from_file_location("golden_recipe", golden_dir / "recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,config", [("rgbnt201", "RGBNT201/DeMo.yml"), ("rgbnt100", "RGBNT100/DeMo.yml")]
)
def test_demo_golden_features(golden_dir, name, config):
    meta = json.loads((golden_dir / f"{name}_demo_keys.json").read_text())
    demo_sd = _recipe(golden_dir).make_state_dict(meta["keys"])
    cfg = load_config(str(REPO / "configs" / config))
    torch.manual_seed(0)  # every parameter and persistent buffer then comes from the checkpoint
    model = build_model(cfg, meta["num_classes"], meta["num_cameras"]).eval()
    assert load_weights(model, demo_sd, cfg) == len(model.state_dict())
    data = np.load(golden_dir / f"{name}_demo.npz")
    batch = {
        "images": {m: torch.from_numpy(data[f"input_{m}"]) for m in cfg.INPUT.MODALITIES},
        "camids": torch.from_numpy(data["cams"]),
    }
    with torch.no_grad():
        feats = model(batch)
    for pattern in (1, 2, 3):
        ours = select_pattern(feats, pattern).numpy()
        assert ours.shape == data[f"pattern{pattern}"].shape
        assert _rel(ours, data[f"pattern{pattern}"]) < 1e-4, f"pattern {pattern}"


def load_seed_sdtps(data):
    """The seeds' SDTPS weights (neutral names) in our MultiModalSDTPS(C=512, N=128)."""
    module = MultiModalSDTPS(512, 128, 0.5, 0.4, 0.25)
    own = module.state_dict()
    sd = {}
    for i, mod in enumerate(("rgb", "nir", "tir")):
        for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
            sd[f"sparse.{i}.{k}"] = data[f"weight_{mod}.predictor.{k}"]
        for k in (
            "norm.weight",
            "norm.bias",
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias",
            "scale",
        ):
            sd[f"aggr.{i}.{k}"] = data[f"weight_{mod}.aggregation.{k}"]
    module.load_state_dict({k: torch.from_numpy(v).reshape(own[k].shape) for k, v in sd.items()})
    return module.eval()


def test_sdtps_golden(golden_dir):
    data = np.load(golden_dir / "sdtps_seed.npz")
    module = load_seed_sdtps(data)
    mods = ("RGB", "NI", "TI")
    with torch.no_grad():
        out = module(
            [torch.from_numpy(data[f"input_{m}_cash"]) for m in mods],
            [torch.from_numpy(data[f"input_{m}_global"]) for m in mods],
        )
    for i, (m, short) in enumerate(zip(mods, ("rgb", "nir", "tir"))):
        assert out["tokens"][i].shape == (2, 26, 512)
        assert _rel(out["tokens"][i].numpy(), data[f"out_{m}_enhanced"]) < 1e-5
        np.testing.assert_array_equal(out["mask"][i].numpy(), data[f"out_{short}_mask"])
    assert _rel(out["feat"].numpy(), data["out_sdtps_feat"]) < 1e-5
