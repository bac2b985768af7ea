"""Checkpoints into the model: ours, bare state dicts, and DeMo's official ones (converted).

DeMo's names (its `make_model.py` / `AttnMOE.py`) -> ours:
  BACKBONE.base.* (OpenAI CLIP names, or TransReID's ViT)  -> backbone.* (timm names)
  BACKBONE.cv_embed (cams, 1, 768) / BACKBONE.base.sie_embed -> sie.weight (cams, 768)
  {rgb,nir,tir}_reduce.{0,1}.*                               -> pife.reduce.{0,1,2}.{0,1}.*
  generalFusion.{r,n,t,rn,rt,nt,rnt}_token (1, 1, C)         -> hdm.tokens[s] (7, C)
  generalFusion.{r,...,rnt}.* (nn.MultiheadAttention)        -> hdm.attn.{s}.*, then stacked
  generalFusion.moe.experts.{h}.expertHead.{e}.mlp.{0,2}.*   -> atm.experts.{h}.{e}.{0,2}.*, then
                                                                 stacked (see stack_fusion)
  generalFusion.moe.gating_network.gate.linear_re.{0,2}.*    -> atm.gate.{0,2}.*
  generalFusion.moe.gating_network.gate.{q_,k_}.weight       -> atm.{q,k}.weight
  bottleneck / classifier (MODEL.JOINT_ORI_HEAD True),
  bottleneck_{r,n,t} / classifier_{r,n,t} (False)            -> ori_heads.{i}.bn / .classifier
  bottleneck_moe / classifier_moe                            -> fused_head.bn / .classifier
"""

import logging
import os
import re

import torch

from utils.safe_load import WeightsFileError, load_file

from .backbones.checkpoint import check_state_dict, openai_to_timm, resample_pos_embed
from .backbones.vit import grid_size
from .fusion.demo import HDM_SUBSETS

logger = logging.getLogger(__name__)

_HDM_NAMES = ("r", "n", "t", "rn", "rt", "nt", "rnt")
_MOD_PREFIXES = ("rgb", "nir", "tir")
_HEAD_SUFFIXES = {"": 0, "_r": 0, "_n": 1, "_t": 2}
assert len(_HDM_NAMES) == len(HDM_SUBSETS)


def is_demo_state_dict(sd):
    return any(k.startswith("BACKBONE.") for k in sd)


def _convert_backbone(sd, cfg):
    base = {k[len("BACKBONE.base.") :]: v for k, v in sd.items() if k.startswith("BACKBONE.base.")}
    if "class_embedding" in base:
        out = openai_to_timm(base, "")
    else:
        out = {
            k: v
            for k, v in base.items()
            if not k.startswith(("sie_embed", "fc.", "head.", "head_dist.", "dist_token"))
        }
    if "pos_embed" in out:
        out["pos_embed"] = resample_pos_embed(out["pos_embed"], grid_size(cfg))
    res = {f"backbone.{k}": v for k, v in out.items()}
    sie = sd.get("BACKBONE.cv_embed", base.get("sie_embed"))
    if sie is not None:
        res["sie.weight"] = sie.reshape(sie.shape[0], -1)
    return res


def convert_demo_state_dict(sd, cfg):
    """DeMo's state dict -> ours (see the module docstring); keys it does not know are kept as they
    are, so that a strict load names them."""
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    out = _convert_backbone(sd, cfg)
    tokens = {}
    for key, v in sd.items():
        if key.startswith("BACKBONE."):
            continue
        m = re.fullmatch(r"(rgb|nir|tir)_reduce\.(.+)", key)
        if m:
            out[f"pife.reduce.{_MOD_PREFIXES.index(m[1])}.{m[2]}"] = v
            continue
        m = re.fullmatch(r"generalFusion\.(\w+)_token", key)
        if m and m[1] in _HDM_NAMES:
            tokens[_HDM_NAMES.index(m[1])] = v.reshape(-1)
            continue
        m = re.fullmatch(r"generalFusion\.(r|n|t|rn|rt|nt|rnt)\.(.+)", key)
        if m:
            out[f"hdm.attn.{_HDM_NAMES.index(m[1])}.{m[2]}"] = v
            continue
        m = re.fullmatch(r"generalFusion\.moe\.experts\.(\d+)\.expertHead\.(\d+)\.mlp\.(.+)", key)
        if m:
            out[f"atm.experts.{m[1]}.{m[2]}.{m[3]}"] = v
            continue
        m = re.fullmatch(r"generalFusion\.moe\.gating_network\.gate\.(linear_re|q_|k_)\.(.+)", key)
        if m:
            name = {"linear_re": "gate", "q_": "q", "k_": "k"}[m[1]]
            out[f"atm.{name}.{m[2]}"] = v
            continue
        m = re.fullmatch(r"(bottleneck|classifier)(_moe|_r|_n|_t|)\.(.+)", key)
        if m:
            head = "fused_head" if m[2] == "_moe" else f"ori_heads.{_HEAD_SUFFIXES[m[2]]}"
            out[f"{head}.{'bn' if m[1] == 'bottleneck' else 'classifier'}.{m[3]}"] = v
            continue
        out[key] = v
    if tokens:
        if sorted(tokens) != list(range(len(_HDM_NAMES))):
            raise ValueError(f"DeMo checkpoint has HDM tokens {sorted(tokens)}, expected all seven")
        out["hdm.tokens"] = torch.stack([tokens[i] for i in range(len(_HDM_NAMES))])
    return stack_fusion(out, cfg.MODEL.HEAD)


def stack_fusion(sd, heads):
    """HDM and ATM one module each (DeMo's form, and our checkpoints before the stacked layout:
    hdm.attn.{s}.*, atm.experts.{h}.{e}.{0,2}.*) -> stacked: hdm.in_proj / out_proj row s,
    atm.experts row e * heads + h, atm.expert_norm channels (e * heads + h) * C/H on. Other keys
    pass; a state dict without per-module keys comes back as it is."""
    out, parts = {}, {}  # parts: stacked key -> {row: tensor}
    for key, v in sd.items():
        m = re.fullmatch(r"hdm\.attn\.(\d+)\.(in_proj_|out_proj\.)(weight|bias)", key)
        if m:
            parts.setdefault(f"hdm.{m[2][:-1]}.{m[3]}", {})[int(m[1])] = v
            continue
        m = re.fullmatch(r"atm\.experts\.(\d+)\.(\d+)\.([02])\.(\w+)", key)
        if m:
            h, e = int(m[1]), int(m[2])
            if h >= heads:
                raise ValueError(
                    f"checkpoint key {key}: expert head {h}, but MODEL.HEAD is {heads}"
                )
            name = f"atm.experts.{m[4]}" if m[3] == "0" else f"atm.expert_norm.{m[4]}"
            parts.setdefault(name, {})[e * heads + h] = v
            continue
        out[key] = v
    for name, rows in parts.items():
        n = len(_HDM_NAMES) * (heads if name.startswith("atm.") else 1)
        if sorted(rows) != list(range(n)):
            raise ValueError(
                f"checkpoint: {name} needs {n} parts (HDM subsets or ATM experts), "
                f"found {len(rows)}"
            )
        stacked = [rows[i] for i in range(n)]
        if name.endswith("num_batches_tracked"):
            out[name] = max(stacked)
        else:
            out[name] = (torch.cat if name.startswith("atm.expert_norm") else torch.stack)(stacked)
    return out


def load_weights(model, source, cfg, name=None):
    """Load a checkpoint file or state dict into `model`, strictly.

    source: a path or a dict (already read from the file `name`, which messages then name);
    accepted: our checkpoints ({"model": state_dict, ...}), bare state dicts (`module.` prefixes
    stripped) and DeMo's (detected by its `BACKBONE.` keys and converted).
    Returns the number of tensors loaded.
    """
    name = source if isinstance(source, (str, os.PathLike)) else (name or "state dict")
    # Our checkpoints (RNG states, optimizer, scheduler included) and DeMo's plain state dicts
    # both load with weights_only=True.
    sd = load_file(source, "checkpoint") if isinstance(source, (str, os.PathLike)) else source
    for wrapper in ("model", "state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise WeightsFileError(f"checkpoint {name} holds a {type(sd).__name__}, not a state dict")
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    if is_demo_state_dict(sd):
        logger.info("%s is a DeMo checkpoint: converting its key names", name)
        sd = convert_demo_state_dict(sd, cfg)
    else:
        sd = stack_fusion(sd, cfg.MODEL.HEAD)  # checkpoints of the per-module HDM / ATM layout
    check_state_dict(model.state_dict(), sd, f"checkpoint {name}")
    model.load_state_dict(sd, strict=True)
    logger.info("loaded %d tensors from %s", len(sd), name)
    return len(sd)
