"""Loading a config: `_BASE_` inheritance, DeMo's legacy keys and values, types, impossible values.

Every failure raises `ConfigError` with a message that names the offending key (and file, where
there is one). DeMo's own YAML files load: renamed keys are translated (one log line per old key),
keys with no meaning here are reported and dropped, `'yes'/'no'` strings become booleans. The same
table translates the configs stored by earlier versions (a run's config.yaml, a checkpoint's cfg),
so they keep loading and comparing: `translate_keys`.
"""

import ast
import copy
import difflib
import logging
import os
from dataclasses import dataclass

import yaml
from yacs.config import CfgNode as CN

from .defaults import get_cfg

PIPELINES = ("ring", "plain")  # DATALOADER.PIPELINE: data/build.py (plain), data/ring.py

logger = logging.getLogger(__name__)

# Sections a dumped config.yaml carries beside the config; informative, dropped on load.
INFO_SECTIONS = ("DERIVED", "PROVENANCE")

# DeMo / TransReID keys that were renamed here, the value unchanged: old -> new.
RENAMED = {
    "MODEL.PRETRAIN_PATH_T": "MODEL.PRETRAIN_PATH",
    "MODEL.TRI_LOSS_WEIGHT": "MODEL.TRIPLET_LOSS_WEIGHT",
    "SOLVER.WARMUP_ITERS": "SOLVER.WARMUP_EPOCHS",  # DeMo's scheduler counts it in epochs
    "INPUT.PROB": "INPUT.FLIP_PROB",
}
# DeMo / TransReID keys with no meaning here: key -> why it is dropped.
IGNORED = {
    "MODEL.NAME": "the architecture follows MODEL.TRANSFORMER_TYPE and the fusion switches",
    "MODEL.DEVICE_ID": "use CUDA_VISIBLE_DEVICES or torchrun",
    "MODEL.DIST_TRAIN": "distributed training follows torchrun's environment",
    "MODEL.LAST_STRIDE": "a ResNet option",
    "MODEL.PRETRAIN_CHOICE": "MODEL.PRETRAIN_PATH alone decides; empty means random initialisation",
    "MODEL.NECK": "the BNNeck is always used",
    "MODEL.IF_WITH_CENTER": "the center loss is not part of DeMo's recipe",
    "MODEL.ID_LOSS_TYPE": "the ID loss is label-smoothed cross-entropy",
    "MODEL.METRIC_LOSS_TYPE": "the metric loss is the batch-hard triplet",
    "MODEL.COS_LAYER": "cosine classifiers are not used by DeMo",
    "MODEL.SIE_VIEW": "no dataset here has view labels for SIE",
    "MODEL.PROMPT": "prompt learning is not part of DeMo's recipe",
    "MODEL.ADAPTER": "adapters are not part of DeMo's recipe",
    "MODEL.FROZEN": "the backbone trains at SOLVER.BACKBONE_LR",
    "MODEL.JPM": "TransReID's jigsaw branch is not part of DeMo",
    "MODEL.RE_ARRANGE": "TransReID's jigsaw branch is not part of DeMo",
    "MODEL.SHIFT_NUM": "TransReID's jigsaw branch is not part of DeMo",
    "MODEL.SHUFFLE_GROUP": "TransReID's jigsaw branch is not part of DeMo",
    "MODEL.DEVIDE_LENGTH": "TransReID's jigsaw branch is not part of DeMo",
    "SOLVER.LARGE_FC_LR": "classifier LR follows SOLVER.BASE_LR",
    "SOLVER.CENTER_LR": "the center loss is not used",
    "SOLVER.CENTER_LOSS_WEIGHT": "the center loss is not used",
    "SOLVER.GAMMA": "the schedule is cosine",
    "SOLVER.STEPS": "the schedule is cosine",
    "SOLVER.WARMUP_METHOD": "the warm-up is linear from SOLVER.WARMUP_FACTOR x BASE_LR",
    "SOLVER.COSINE_MARGIN": "cosine classifiers are not used",
    "SOLVER.COSINE_SCALE": "cosine classifiers are not used",
    "TEST.NECK_FEAT": "test features are the pre-BN features, as in DeMo ('before')",
    "TEST.DIST_MAT": "distances are not dumped",
    "TEST.PIDS": "ids are not dumped",
    "TEST.CAMIDS": "camera ids are not dumped",
}
# DeMo's on/off switches that became a value here: key -> (new key, value if on, value if off).
LEGACY_SWITCHES = {"MODEL.IF_LABELSMOOTH": ("MODEL.LABEL_SMOOTH", 0.1, 0.0)}
# DeMo's letters of TEST.MISS: the first, second and third of INPUT.MODALITIES (R, N, T).
MISS_LETTERS = "rnt"


@dataclass(frozen=True)
class _ByPosition:
    """DeMo's TEST.MISS letters, kept as positions until INPUT.MODALITIES is final (a later file
    or override may set it), then read as those modalities' names."""

    written: str
    positions: tuple

    def names(self, modalities):
        return tuple(modalities[i] for i in self.positions)


def _joint_ori_head(value, where):
    """DeMo's MODEL.DIRECT, an int used as a flag (1: one head on [R; N; T]) -> the bool."""
    if isinstance(value, bool) or value not in (0, 1):
        raise ConfigError(
            f"MODEL.DIRECT (DeMo's name for MODEL.JOINT_ORI_HEAD) must be 0 or 1, got {value!r}"
            f"{where}; or write MODEL.JOINT_ORI_HEAD True / False"
        )
    return value == 1


def _miss_positions(value, where):
    """DeMo's TEST.MISS ("none" / "nothing", or up to two of the letters r, n, t) -> _ByPosition."""
    text = str(value)
    if text in ("none", "nothing"):
        return _ByPosition(text, ())
    if (
        not 0 < len(text) < len(MISS_LETTERS)
        or any(c not in MISS_LETTERS for c in text)
        or len(set(text)) != len(text)
    ):
        raise ConfigError(
            f"TEST.MISS (DeMo's name for TEST.MISSING_MODALITIES) {value!r}{where} is not one of "
            "none, nothing, r, n, t, rn, rt, nt (r, n, t: the first, second, third of "
            "INPUT.MODALITIES); or write TEST.MISSING_MODALITIES with modality names, e.g. "
            "\"('TI',)\""
        )
    return _ByPosition(text, tuple(sorted(MISS_LETTERS.index(c) for c in text)))


# DeMo keys whose value changes form as well as its name: old key -> (new key, converter).
CONVERTED = {
    "MODEL.DIRECT": ("MODEL.JOINT_ORI_HEAD", _joint_ori_head),
    "TEST.MISS": ("TEST.MISSING_MODALITIES", _miss_positions),
}


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names it."""


def _read_yaml(path, chain=()):
    """The mapping of `path` merged over its `_BASE_` files; chain: the files that inherit it."""
    real = os.path.realpath(path)
    seen = [os.path.realpath(p) for p in chain]
    if real in seen:
        loop = " -> ".join([*chain[seen.index(real) :], path])
        raise ConfigError(f"_BASE_ loop: {loop}; remove the _BASE_ line of one of these files")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    merged = _read_yaml(os.path.normpath(os.path.join(os.path.dirname(path), base)), (*chain, path))
    _deep_merge(merged, data)
    return merged


def _deep_merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _decode(value):
    """Strings are Python literals where they parse as one (yacs' rule: "('RGBNT201')", "1e-4")."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _parse_opts(opts):
    if len(opts) % 2:
        raise ConfigError(f"overrides come in KEY VALUE pairs; got an odd list: {opts}")
    return {key: _decode(raw) for key, raw in zip(opts[0::2], opts[1::2])}


def _leaf_keys(node, prefix=""):
    keys = {}
    for k, v in node.items():
        if isinstance(v, CN):
            keys.update(_leaf_keys(v, f"{prefix}{k}."))
        else:
            keys[f"{prefix}{k}"] = v
    return keys


def _coerce(key, value, default, source):
    """Type-check `value` against the default's type; translate legacy bool strings."""
    where = f" (from {source})" if source else ""
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("yes", "no", "true", "false", "on", "off"):
            new = value.lower() in ("yes", "true", "on")
            logger.warning("%s: the string %r is read as %s%s", key, value, new, where)
            return new
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be True or False, got {value!r}{where}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (tuple, list)) and isinstance(value, (tuple, list)):
        return tuple(value)
    if isinstance(default, (tuple, list)) and isinstance(value, (int, float, str)):
        # DeMo writes one-element tuples as ('RGBNT201') which YAML reads as a scalar.
        return (value,)
    if type(value) is not type(default):
        raise ConfigError(
            f"{key} expects {type(default).__name__} like {default!r}, got {value!r}{where}"
        )
    return value


def _translate(key, value, source):
    """(key, value) with DeMo's name and value translated (one log line per old key); (None, None)
    for a key with no meaning here. TEST.MISS comes back as _ByPosition (see `_resolve`)."""
    where = f" (from {source})" if source else ""
    if key in RENAMED:
        new_key = RENAMED[key]
        logger.warning(
            "%s%s is DeMo's name for %s; read as %s = %r", key, where, new_key, new_key, value
        )
        return new_key, value
    if key in CONVERTED:
        new_key, convert = CONVERTED[key]
        new = convert(value, where)
        if not isinstance(new, _ByPosition):  # logged once the positions have names
            logger.warning(
                "%s %r%s is DeMo's name for %s; read as %s = %r",
                key,
                value,
                where,
                new_key,
                new_key,
                new,
            )
        return new_key, new
    if key in LEGACY_SWITCHES:
        new_key, on, off = LEGACY_SWITCHES[key]
        new = on if str(value).lower() in ("on", "yes", "true") else off
        logger.warning(
            "%s%s is DeMo's switch for %s; read as %s = %s", key, where, new_key, new_key, new
        )
        return new_key, new
    if key in IGNORED:
        logger.warning("%s = %r%s is ignored here: %s", key, value, where, IGNORED[key])
        return None, None
    return key, value


def _resolve(key, value, modalities, source):
    """The modality names of DeMo's TEST.MISS letters (`value`, a _ByPosition), logged."""
    names = value.names(modalities)
    where = f" (from {source})" if source else ""
    logger.warning(
        "TEST.MISS %r%s is DeMo's name for %s (its letters r, n, t are the first, second, third "
        "of INPUT.MODALITIES %s); read as %s = %r",
        value.written,
        where,
        key,
        list(modalities),
        key,
        names,
    )
    return names


def _apply(cfg, flat, source, positional):
    """Merge the flat {key: value} mapping of one source into cfg. Values of DeMo's TEST.MISS are
    collected in `positional` ({key: (value, source)}) for `load_config` to resolve once
    INPUT.MODALITIES is final; a later value of the same key replaces them."""
    known = _leaf_keys(cfg)
    for key, value in flat.items():
        if key.split(".")[0] in INFO_SECTIONS:
            continue
        key, value = _translate(key, _decode(value), source)
        if key is None:
            continue
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=3)
            msg = f"unknown config key {key}" + (f" (from {source})" if source else "")
            raise ConfigError(msg + (f"; did you mean {', '.join(hint)}?" if hint else ""))
        positional.pop(key, None)
        if isinstance(value, _ByPosition):
            positional[key] = (value, source)
            continue
        _set(cfg, key, _coerce(key, value, known[key], source))


def _set(cfg, key, value):
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value


def translate_keys(flat, source=""):
    """A saved config's flat {key: value} (a checkpoint's cfg, a run's config.yaml) with DeMo's
    and earlier versions' key names and values translated to the current ones, one log line per
    old key; keys with no meaning here and the informative sections are dropped. Values are not
    type-checked: the mapping is for comparing, not for running."""
    out, positional = {}, {}
    for key, value in flat.items():
        if key.split(".")[0] in INFO_SECTIONS:
            continue
        key, value = _translate(key, value, source)  # typed already: read from YAML
        if key is None:
            continue
        (positional if isinstance(value, _ByPosition) else out)[key] = value
    modalities = tuple(out.get("INPUT.MODALITIES", get_cfg().INPUT.MODALITIES))
    for key, value in positional.items():
        out.setdefault(key, _resolve(key, value, modalities, source))
    return out


def _backbone(cfg):
    # The backbone registry is the one list of types and widths; imported on use, and free of
    # torch, so `import config` stays light.
    from modeling.backbones.specs import backbone_spec

    return backbone_spec(cfg)


def feature_dim(cfg):
    """Width C of the per-modality features (after the CLIP projection where there is one)."""
    return _backbone(cfg).feature_dim(cfg)


def patch_size(cfg):
    """Side of the backbone's square patches."""
    return _backbone(cfg).patch_size(cfg)


def _check_sizes(cfg):
    """INPUT.SIZE_TRAIN / SIZE_TEST the backbone's patch embedding takes (modeling/backbones/vit).

    The patch grid is (side - patch) // stride + 1 per side, so each side needs at least one
    patch. With the stride equal to the patch (non-overlapping patches) the embedding cuts the
    image into whole patches, so each side must be a multiple of the patch; overlapping strides
    leave a remainder out. The position embedding is built for SIZE_TRAIN's grid, so the test
    images must have the same size.
    """
    p, stride = patch_size(cfg), tuple(cfg.MODEL.STRIDE_SIZE)
    size = tuple(cfg.INPUT.SIZE_TRAIN)
    tiles = stride == (p, p)
    fix = tuple(max(p, -(-v // p) * p if tiles else v) for v in size)
    if fix != size:
        rule = (
            f"each side a multiple of the patch {p} (the stride equals it)"
            if tiles
            else f"each side at least the patch {p}"
        )
        raise ConfigError(
            f"INPUT.SIZE_TRAIN {size} does not fit the {cfg.MODEL.TRANSFORMER_TYPE} patch "
            f"embedding (patch {p}, MODEL.STRIDE_SIZE {stride}): it needs {rule}; the smallest "
            f"valid size at least as large is {fix}"
        )
    if tuple(cfg.INPUT.SIZE_TEST) != size:
        raise ConfigError(
            f"INPUT.SIZE_TEST {tuple(cfg.INPUT.SIZE_TEST)} differs from INPUT.SIZE_TRAIN {size}: "
            f"the model's position embedding is built for the training size; set INPUT.SIZE_TEST "
            f"to {size}"
        )


def check(cfg):
    """Raise ConfigError for impossible values; apply the SDTPS exclusive switch."""
    m, s, t, i = cfg.MODEL, cfg.SOLVER, cfg.TEST, cfg.INPUT

    def need(ok, msg):
        if not ok:
            raise ConfigError(msg)

    # The registries are the one list of names; imported on use, and free of torch, so
    # `import config` stays light.
    from data.datasets import DATASET_REGISTRY
    from modeling.backbones.specs import BACKBONE_REGISTRY

    need(
        m.TRANSFORMER_TYPE in BACKBONE_REGISTRY,
        f"MODEL.TRANSFORMER_TYPE {m.TRANSFORMER_TYPE!r} is not one of "
        f"{tuple(BACKBONE_REGISTRY.names())} (modeling/backbones/specs.py)",
    )
    need(
        cfg.DATASETS.NAMES in DATASET_REGISTRY,
        f"DATASETS.NAMES {cfg.DATASETS.NAMES!r} is not one of {tuple(DATASET_REGISTRY.names())}",
    )
    need(m.DEVICE in ("auto", "cuda", "cpu"), f"MODEL.DEVICE {m.DEVICE!r}: use auto, cuda or cpu")
    need(
        len(m.STRIDE_SIZE) == 2 and min(m.STRIDE_SIZE) > 0,
        f"MODEL.STRIDE_SIZE must be two positive integers, got {m.STRIDE_SIZE}",
    )
    need(
        0.0 < m.SDTPS_SPARSE_RATIO < 1.0,
        f"MODEL.SDTPS_SPARSE_RATIO must be in (0, 1), got {m.SDTPS_SPARSE_RATIO}",
    )
    need(
        0.0 < m.SDTPS_AGGR_RATIO <= 1.0,
        f"MODEL.SDTPS_AGGR_RATIO must be in (0, 1], got {m.SDTPS_AGGR_RATIO}",
    )
    need(0.0 <= m.SDTPS_BETA <= 0.5, f"MODEL.SDTPS_BETA must be in [0, 0.5], got {m.SDTPS_BETA}")
    need(m.SDTPS_GUMBEL_TAU > 0, f"MODEL.SDTPS_GUMBEL_TAU must be > 0, got {m.SDTPS_GUMBEL_TAU}")
    gumbel_modes = ("ste", "sample", "soft")
    need(
        m.SDTPS_GUMBEL_MODE in gumbel_modes,
        f"MODEL.SDTPS_GUMBEL_MODE {m.SDTPS_GUMBEL_MODE!r} is not one of {gumbel_modes}",
    )
    need(
        m.SDTPS_GUMBEL_MODE == "ste" or m.SDTPS_USE_GUMBEL,
        f"MODEL.SDTPS_GUMBEL_MODE {m.SDTPS_GUMBEL_MODE!r} needs MODEL.SDTPS_USE_GUMBEL True "
        "(without it training uses the plain top-K); set it, or leave the mode at 'ste'",
    )
    need(0.0 <= m.LABEL_SMOOTH < 1.0, f"MODEL.LABEL_SMOOTH must be in [0, 1), got {m.LABEL_SMOOTH}")
    need(
        len(i.MODALITIES) == 3 and len(set(i.MODALITIES)) == 3,
        f"INPUT.MODALITIES must name three distinct modalities, got {i.MODALITIES}",
    )
    for key in ("SIZE_TRAIN", "SIZE_TEST"):
        need(len(i[key]) == 2 and min(i[key]) > 0, f"INPUT.{key} must be (H, W), got {i[key]}")
    _check_sizes(cfg)
    need(
        0.0 <= cfg.DATASETS.VAL_FRACTION < 1.0,
        f"DATASETS.VAL_FRACTION must be in [0, 1), got {cfg.DATASETS.VAL_FRACTION}",
    )
    need(
        cfg.DATALOADER.PIPELINE in PIPELINES,
        f"DATALOADER.PIPELINE {cfg.DATALOADER.PIPELINE!r} is not one of {PIPELINES}",
    )
    need(
        cfg.DATALOADER.SAMPLER in ("softmax_triplet", "softmax"),
        f"DATALOADER.SAMPLER {cfg.DATALOADER.SAMPLER!r}: use softmax_triplet or softmax",
    )
    need(
        cfg.DATALOADER.NUM_INSTANCE >= 1,
        f"DATALOADER.NUM_INSTANCE must be >= 1, got {cfg.DATALOADER.NUM_INSTANCE}",
    )
    need(s.IMS_PER_BATCH >= 1, f"SOLVER.IMS_PER_BATCH must be >= 1, got {s.IMS_PER_BATCH}")
    need(t.IMS_PER_BATCH >= 1, f"TEST.IMS_PER_BATCH must be >= 1, got {t.IMS_PER_BATCH}")
    need(
        cfg.DATALOADER.NUM_WORKERS >= 0,
        f"DATALOADER.NUM_WORKERS must be >= 0 (0: load in the main process), got "
        f"{cfg.DATALOADER.NUM_WORKERS}",
    )
    need(
        s.IMS_PER_BATCH % cfg.DATALOADER.NUM_INSTANCE == 0,
        f"SOLVER.IMS_PER_BATCH ({s.IMS_PER_BATCH}) must be a multiple of "
        f"DATALOADER.NUM_INSTANCE ({cfg.DATALOADER.NUM_INSTANCE})",
    )
    need(
        s.OPTIMIZER_NAME in ("Adam", "AdamW", "SGD"),
        f"SOLVER.OPTIMIZER_NAME {s.OPTIMIZER_NAME!r}: use Adam, AdamW or SGD",
    )
    need(
        s.AMP in ("auto", "bf16", "fp16", "off"), f"SOLVER.AMP {s.AMP!r}: use auto, bf16, fp16, off"
    )
    backends = ("auto", "cudnn", "flash", "efficient", "math")
    need(
        m.SDPA_BACKEND in backends,
        f"MODEL.SDPA_BACKEND {m.SDPA_BACKEND!r} is not one of {backends}",
    )
    modes = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    need(s.COMPILE_MODE in modes, f"SOLVER.COMPILE_MODE {s.COMPILE_MODE!r} is not one of {modes}")
    need(s.DDP_BUCKET_MB > 0, f"SOLVER.DDP_BUCKET_MB must be > 0, got {s.DDP_BUCKET_MB}")
    need(
        s.DDP_GRAD_DTYPE in ("float32", "bfloat16"),
        f"SOLVER.DDP_GRAD_DTYPE {s.DDP_GRAD_DTYPE!r}: use float32 or bfloat16",
    )
    need(s.MAX_EPOCHS >= 1, f"SOLVER.MAX_EPOCHS must be >= 1, got {s.MAX_EPOCHS}")
    need(0 <= s.WARMUP_EPOCHS, f"SOLVER.WARMUP_EPOCHS must be >= 0, got {s.WARMUP_EPOCHS}")
    need(s.BASE_LR > 0 and s.BACKBONE_LR >= 0, "SOLVER.BASE_LR must be > 0, BACKBONE_LR >= 0")
    need(
        0.0 <= i.MODALITY_DROPOUT <= 1.0,
        f"INPUT.MODALITY_DROPOUT must be a probability in [0, 1], got {i.MODALITY_DROPOUT}",
    )
    for entry in i.MODALITY_DROPOUT_SETS:
        names = str(entry).split("+")
        need(
            all(n in i.MODALITIES for n in names) and len(set(names)) == len(names),
            f"INPUT.MODALITY_DROPOUT_SETS entry {entry!r}: write NAME or NAME+NAME with names "
            f"of INPUT.MODALITIES {list(i.MODALITIES)}",
        )
        need(
            len(names) < len(i.MODALITIES),
            f"INPUT.MODALITY_DROPOUT_SETS entry {entry!r} drops every modality",
        )
    for key in ("MISSING_MODALITIES", "QUERY_MODALITIES", "GALLERY_MODALITIES"):
        names = tuple(t[key])
        bad = [n for n in names if n not in i.MODALITIES]
        need(
            not bad,
            f"TEST.{key} {list(names)}: {bad} not in INPUT.MODALITIES {list(i.MODALITIES)}; "
            "write a tuple of their names, e.g. \"('TI',)\" or \"('RGB', 'NI')\"",
        )
        need(len(set(names)) == len(names), f"TEST.{key} {list(names)} names a modality twice")
    need(
        len(t.MISSING_MODALITIES) < len(i.MODALITIES),
        f"TEST.MISSING_MODALITIES {list(t.MISSING_MODALITIES)} leaves no modality to test with",
    )
    for key in ("QUERY_MODALITIES", "GALLERY_MODALITIES"):
        need(
            not t[key] or not t.MISSING_MODALITIES,
            f"TEST.{key} and TEST.MISSING_MODALITIES {list(t.MISSING_MODALITIES)} both set: use "
            "one (TEST.MISSING_MODALITIES is the shorthand for the same modalities missing on "
            "both sides)",
        )
    need(
        t.RETURN_PATTERN in (1, 2, 3),
        f"TEST.RETURN_PATTERN must be 1, 2 or 3, got {t.RETURN_PATTERN}",
    )
    need(m.HDM or not m.ATM or m.USE_SDTPS, "MODEL.ATM needs MODEL.HDM (ATM mixes HDM's features)")

    if m.USE_SDTPS and (m.HDM or m.ATM):
        logger.info(
            "MODEL.USE_SDTPS is on: MODEL.HDM and MODEL.ATM are turned off (exclusive switch)"
        )
        m.HDM = False
        m.ATM = False
    dim = feature_dim(cfg)
    if m.ATM:
        need(
            m.HEAD >= 1 and dim % m.HEAD == 0,
            f"MODEL.HEAD ({m.HEAD}) must divide the feature width {dim} of {m.TRANSFORMER_TYPE}",
        )
    fused = m.HDM or m.USE_SDTPS
    need(
        fused or t.RETURN_PATTERN == 1,
        f"TEST.RETURN_PATTERN {t.RETURN_PATTERN} needs MODEL.HDM or MODEL.USE_SDTPS",
    )


def load_config(config_file=None, opts=(), freeze=True):
    """Defaults <- YAML file (with _BASE_) <- KEY VALUE overrides; checked and frozen."""
    cfg = get_cfg()
    positional = {}
    if config_file:
        _apply(cfg, _flatten(_read_yaml(config_file)), config_file, positional)
    _apply(cfg, _parse_opts(list(opts)), "command line", positional)
    for key, (value, source) in positional.items():
        _set(cfg, key, _resolve(key, value, cfg.INPUT.MODALITIES, source))
    check(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def dump_config(cfg, path, derived=None, provenance=None):
    """Write the effective config plus informative DERIVED / PROVENANCE sections."""
    data = yaml.safe_load(cfg.dump())
    if derived:
        data["DERIVED"] = copy.deepcopy(derived)
    if provenance:
        data["PROVENANCE"] = copy.deepcopy(provenance)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    os.replace(tmp, path)
