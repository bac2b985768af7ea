"""Backbone weights from MODEL.PRETRAIN_PATH: OpenAI CLIP files, timm / TransReID ImageNet files,
and checkpoints of this framework.

Files are read without running code from them (`utils.safe_load.load_file`): torch.save files
through `torch.load(weights_only=True)`, TorchScript archives by reading their pickled tensors
(never `torch.jit.load`, which would run the archive's TorchScript); a file that needs more (a
pickled Python object, a scripted `__setstate__`) is refused with a one-line error.

Formats read:
- OpenAI `ViT-B-16.pt`, a TorchScript archive holding fp16 tensors (its tensors and the parameter
  names its code declares, as `torch.jit.load(...).state_dict()` gives them);
- a plain state dict with OpenAI's key names (`visual.conv1.weight`, ..., `visual.proj`); the text
  tower is ignored;
- a timm / TransReID `.pth` (possibly under `model` / `state_dict`, possibly `module.`-prefixed),
  and a JAX `.npz` through timm's own reader (numpy arrays only: np.load(allow_pickle=False));
- a checkpoint written by train_net.py (`model_final.pth`, ...): its `backbone.*` tensors, so a
  model trained on one dataset can start another run; the rest of that model is not loaded.
Names are mapped onto `ReIDViT` (timm names), tensors cast to fp32, and a 14x14 position grid
resampled once to the model's grid with bilinear interpolation (align_corners=False, no
antialiasing), as DeMo does.
"""

import logging
import math
import os

import torch
import torch.nn.functional as F

from utils.safe_load import WeightsFileError, WeightsFileNotFoundError, load_file

logger = logging.getLogger(__name__)

# OpenAI CLIP visual-tower names -> timm VisionTransformer names, applied in order.
_OPENAI_SWAPS = (
    ("conv1.", "patch_embed.proj."),
    ("transformer.resblocks.", "blocks."),
    ("ln_pre.", "norm_pre."),
    ("ln_post.", "norm."),
    (".ln_1.", ".norm1."),
    (".ln_2.", ".norm2."),
    (".attn.in_proj_weight", ".attn.qkv.weight"),
    (".attn.in_proj_bias", ".attn.qkv.bias"),
    (".attn.out_proj.", ".attn.proj."),
    (".mlp.c_fc.", ".mlp.fc1."),
    (".mlp.c_proj.", ".mlp.fc2."),
)
# Keys of classification heads / distillation that a backbone never uses.
_DROP_PREFIXES = ("head.", "head_dist.", "fc.", "pre_logits.", "dist_token", "fc_norm.")


def openai_to_timm(state_dict, prefix):
    """Keys under `prefix` in OpenAI's naming -> ReIDViT keys; other keys are ignored."""
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        k = key[len(prefix) :]
        if k == "class_embedding":
            out["cls_token"] = value.reshape(1, 1, -1)
        elif k == "positional_embedding":
            out["pos_embed"] = value.unsqueeze(0)
        elif k == "proj":
            out["proj"] = value
        else:
            for old, new in _OPENAI_SWAPS:
                k = k.replace(old, new)
            out[k] = value
    return out


def resample_pos_embed(pos, grid):
    """pos: (1, 1 + n, D) on a square grid -> (1, 1 + gh * gw, D) resampled bilinearly to `grid`."""
    n = pos.shape[1] - 1
    if n == grid[0] * grid[1]:
        return pos
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(
            f"cannot resample a position embedding of {n} patches (not a square grid) "
            f"to {grid[0]}x{grid[1]}"
        )
    cls, patches = pos[:, :1], pos[:, 1:].float()
    patches = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(
        patches, size=tuple(grid), mode="bilinear", align_corners=False, antialias=False
    )
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1).to(pos.dtype)
    logger.info("position embedding resampled from %dx%d to %dx%d", side, side, *grid)
    return torch.cat([cls, patches], dim=1)


def read_state_dict(path):
    """Any supported file -> a flat {name: tensor} dict in the file's own naming."""
    sd = load_file(path, "MODEL.PRETRAIN_PATH")
    for wrapper in ("model", "state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise WeightsFileError(
            f"MODEL.PRETRAIN_PATH {path} holds a {type(sd).__name__}, not a state dict"
        )
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}


def _read_npz(path, backbone):
    """A JAX .npz through timm's reader, into a 224 ViT of the same width, then as a state dict."""
    from timm.models.vision_transformer import VisionTransformer, _load_weights

    ref = VisionTransformer(
        img_size=224,
        patch_size=16,
        embed_dim=backbone.width,
        depth=len(backbone.blocks),
        num_heads=backbone.blocks[0].attn.num_heads,
        num_classes=0,
    )
    _load_weights(ref, path)
    return ref.state_dict()


def to_backbone_names(sd, backbone):
    """A file's state dict -> ReIDViT names, fp32, position embedding at the model's grid."""
    if any(k.startswith("visual.") for k in sd):
        sd = openai_to_timm(sd, "visual.")
    elif any(k.startswith("backbone.") for k in sd):  # a whole model of ours
        sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    else:
        sd = {k: v for k, v in sd.items() if not k.startswith(_DROP_PREFIXES)}
        w = sd.get("patch_embed.proj.weight")
        if w is not None and w.dim() == 2:
            # Early timm checkpoints store the patch projection as a linear layer.
            sd["patch_embed.proj.weight"] = w.reshape(backbone.patch_embed.proj.weight.shape)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    if "pos_embed" in sd:
        sd["pos_embed"] = resample_pos_embed(sd["pos_embed"], backbone.grid_size)
    return sd


def check_state_dict(model_sd, sd, source):
    """Raise ValueError naming `source` and the first missing, unexpected or mis-shaped keys."""
    missing = [k for k in model_sd if k not in sd]
    unexpected = [k for k in sd if k not in model_sd]
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(model_sd[k].shape)}"
        for k in model_sd
        if k in sd and sd[k].shape != model_sd[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{name} ({len(keys)}): {keys[:5]}"
            for name, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape mismatch", shapes),
            )
            if keys
        ]
        raise ValueError(f"{source} does not fit the model: " + "; ".join(parts))


def load_pretrained(backbone, path):
    """Load MODEL.PRETRAIN_PATH into `backbone` strictly; returns the number of tensors loaded."""
    if not os.path.isfile(path):
        raise WeightsFileNotFoundError(f"MODEL.PRETRAIN_PATH {path} does not exist")
    raw = _read_npz(path, backbone) if path.endswith(".npz") else read_state_dict(path)
    sd = to_backbone_names(raw, backbone)
    check_state_dict(backbone.state_dict(), sd, f"backbone weights {path}")
    backbone.load_state_dict(sd, strict=True)
    logger.info("loaded %d backbone tensors from %s", len(sd), path)
    return len(sd)
