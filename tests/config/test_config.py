import json
import logging
import os
import subprocess
import sys

import pytest

from config import ConfigError, dump_config, get_cfg, load_config, translate_keys

DEMO_STYLE_YAML = """\
MODEL:
  PRETRAIN_CHOICE: 'imagenet'
  PRETRAIN_PATH_T: '/somewhere/ViT-B-16.pt'
  METRIC_LOSS_TYPE: 'triplet'
  IF_LABELSMOOTH: 'on'
  IF_WITH_CENTER: 'no'
  NAME: 'DeMo'
  NO_MARGIN: True
  DEVICE_ID: ('0')
  TRANSFORMER_TYPE: 'ViT-B-16'
  STRIDE_SIZE: [ 16, 16 ]
  SIE_CAMERA: True
  DIRECT: 1
  SIE_COE: 1.0
  ID_LOSS_WEIGHT: 0.25
  TRIPLET_LOSS_WEIGHT: 1.0
  GLOBAL_LOCAL: True
  HEAD: 4
  FROZEN: True
  HDM: True
  ATM: True
INPUT:
  SIZE_TRAIN: [ 256, 128 ]
  SIZE_TEST: [ 256, 128 ]
  PROB: 0.5
  RE_PROB: 0.5
  PADDING: 10
DATASETS:
  NAMES: ('RGBNT201')
  ROOT_DIR: '..'
DATALOADER:
  SAMPLER: 'softmax_triplet'
  NUM_INSTANCE: 8
  NUM_WORKERS: 14
SOLVER:
  BASE_LR: 0.00035
  WARMUP_ITERS: 10
  MAX_EPOCHS: 50
  OPTIMIZER_NAME: 'Adam'
  GAMMA: 0.1
  IMS_PER_BATCH: 64
  EVAL_PERIOD: 1
TEST:
  IMS_PER_BATCH: 128
  RE_RANKING: 'no'
  WEIGHT: ''
  NECK_FEAT: 'before'
  FEAT_NORM: 'yes'
  MISS: "nothing"
OUTPUT_DIR: '..'
"""


def test_get_cfg_returns_independent_clones():
    a, b = get_cfg(), get_cfg()
    a.MODEL.HEAD = 99
    assert b.MODEL.HEAD == 4


def test_base_inheritance_and_sdtps_switch():
    cfg = load_config("configs/RGBNT201/DeMo_SDTPS.yml")
    assert cfg.MODEL.USE_SDTPS and not cfg.MODEL.HDM and not cfg.MODEL.ATM
    assert cfg.SOLVER.IMS_PER_BATCH == 64 and cfg.DATALOADER.NUM_INSTANCE == 8
    assert cfg.INPUT.SIZE_TRAIN == (256, 128)
    vehicles = load_config("configs/RGBNT100/DeMo.yml")
    assert vehicles.MODEL.HEAD == 8 and vehicles.MODEL.JOINT_ORI_HEAD is False
    assert vehicles.SOLVER.WARMUP_EPOCHS == 5 and vehicles.INPUT.SIZE_TRAIN == (128, 256)


def test_exclusive_switch_from_command_line(caplog):
    with caplog.at_level(logging.INFO):
        cfg = load_config("configs/RGBNT201/DeMo.yml", ["MODEL.USE_SDTPS", "True"])
    assert not cfg.MODEL.HDM and not cfg.MODEL.ATM
    assert "exclusive" in caplog.text


def test_overrides_and_numeric_coercion():
    cfg = load_config(
        "configs/RGBNT201/DeMo.yml",
        [
            "SOLVER.BASE_LR",
            "1",
            "MODEL.SDTPS_USE_GUMBEL",
            "True",
            "INPUT.SIZE_TRAIN",
            "(128, 64)",
            "INPUT.SIZE_TEST",
            "[128, 64]",
        ],
    )
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.MODEL.SDTPS_USE_GUMBEL is True and cfg.INPUT.SIZE_TRAIN == (128, 64)


@pytest.mark.parametrize(
    "opts, named",
    [
        (["NOT.A_KEY", "1"], "NOT.A_KEY"),
        (["MODEL.HEAD", "'four'"], "MODEL.HEAD"),
        (["MODEL.SDTPS_SPARSE_RATIO", "1.0"], "MODEL.SDTPS_SPARSE_RATIO"),
        (["MODEL.SDTPS_SPARSE_RATIO", "0"], "MODEL.SDTPS_SPARSE_RATIO"),
        (["MODEL.SDTPS_AGGR_RATIO", "1.5"], "MODEL.SDTPS_AGGR_RATIO"),
        (["MODEL.SDTPS_AGGR_RATIO", "0.0"], "MODEL.SDTPS_AGGR_RATIO"),
        (["SOLVER.IMS_PER_BATCH", "60"], "SOLVER.IMS_PER_BATCH"),
        (["MODEL.HEAD", "3"], "MODEL.HEAD"),
        (["MODEL.HDM", "False"], "MODEL.ATM"),
        (["TEST.MISS", "'x'"], "TEST.MISS"),
        (["DATASETS.NAMES", "'Market1501'"], "DATASETS.NAMES"),
        (["MODEL.HDM", "maybe"], "MODEL.HDM"),
        (["MODEL.HEAD"], "pairs"),
        (["SOLVER.DDP_GRAD_DTYPE", "float16"], "SOLVER.DDP_GRAD_DTYPE"),
        (["SOLVER.DDP_BUCKET_MB", "0"], "SOLVER.DDP_BUCKET_MB"),
        (["TEST.QUERY_MODALITIES", "('RGB', 'IR')"], "TEST.QUERY_MODALITIES"),
        (["TEST.GALLERY_MODALITIES", "('NI', 'NI')"], "TEST.GALLERY_MODALITIES"),
        (
            ["TEST.GALLERY_MODALITIES", "('NI',)", "TEST.MISSING_MODALITIES", "('RGB',)"],
            "TEST.GALLERY_MODALITIES",
        ),
        (["TEST.GALLERY_MODALITIES", "('NI',)", "TEST.MISS", "r"], "TEST.GALLERY_MODALITIES"),
        (["TEST.MISSING_MODALITIES", "('IR',)"], "TEST.MISSING_MODALITIES"),
        (["TEST.MISSING_MODALITIES", "RGB+NI"], "TEST.MISSING_MODALITIES"),
        (["TEST.MISSING_MODALITIES", "('TI', 'TI')"], "TEST.MISSING_MODALITIES"),
        (["TEST.MISSING_MODALITIES", "('RGB', 'NI', 'TI')"], "TEST.MISSING_MODALITIES"),
        (["MODEL.JOINT_ORI_HEAD", "1"], "MODEL.JOINT_ORI_HEAD"),
        (["MODEL.DIRECT", "2"], "MODEL.DIRECT"),
        (["MODEL.DIRECT", "'yes'"], "MODEL.DIRECT"),
        (["TEST.MISS", "rnt"], "TEST.MISS"),
        (["SOLVER.WARMUP_EPOCHS", "-1"], "SOLVER.WARMUP_EPOCHS"),
        (["SOLVER.WARMUP_ITERS", "'ten'"], "SOLVER.WARMUP_EPOCHS"),
        (["MODEL.TRANSFORMER_TYPE", "'resnet50'"], "MODEL.TRANSFORMER_TYPE"),
        (["INPUT.MODALITY_DROPOUT", "1.5"], "INPUT.MODALITY_DROPOUT"),
        (["INPUT.MODALITY_DROPOUT_SETS", "('RGB+NI+TI',)"], "INPUT.MODALITY_DROPOUT_SETS"),
        (["INPUT.MODALITY_DROPOUT_SETS", "('RGB+IR',)"], "INPUT.MODALITY_DROPOUT_SETS"),
        (["SOLVER.IMS_PER_BATCH", "-64"], "SOLVER.IMS_PER_BATCH"),
        (["SOLVER.IMS_PER_BATCH", "0"], "SOLVER.IMS_PER_BATCH"),
        (["TEST.IMS_PER_BATCH", "-1"], "TEST.IMS_PER_BATCH"),
        (["TEST.IMS_PER_BATCH", "0"], "TEST.IMS_PER_BATCH"),
        (["DATALOADER.NUM_WORKERS", "-2"], "DATALOADER.NUM_WORKERS"),
    ],
)
def test_bad_values_name_the_key(opts, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config("configs/RGBNT201/DeMo.yml", opts)


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    f = tmp_path / "bad.yml"
    f.write_text("MODEL:\n  HAED: 4\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(f))
    assert (
        "MODEL.HAED" in str(e.value) and "bad.yml" in str(e.value) and "MODEL.HEAD" in str(e.value)
    )


def test_missing_file_is_named():
    with pytest.raises(ConfigError, match="nope.yml"):
        load_config("configs/nope.yml")


def test_demo_yaml_loads_with_legacy_messages(tmp_path, caplog):
    f = tmp_path / "DeMo.yml"
    f.write_text(DEMO_STYLE_YAML)
    with caplog.at_level(logging.WARNING):
        cfg = load_config(str(f))
    assert cfg.MODEL.PRETRAIN_PATH == "/somewhere/ViT-B-16.pt"
    assert cfg.TEST.FEAT_NORM is True and cfg.TEST.RE_RANKING is False
    assert cfg.TEST.MISSING_MODALITIES == () and cfg.DATASETS.NAMES == "RGBNT201"
    assert cfg.MODEL.JOINT_ORI_HEAD is True and cfg.SOLVER.WARMUP_EPOCHS == 10
    assert cfg.INPUT.FLIP_PROB == 0.5
    for key in (
        "MODEL.PRETRAIN_PATH_T",
        "MODEL.FROZEN",
        "TEST.FEAT_NORM",
        "TEST.MISS",
        "SOLVER.GAMMA",
        "MODEL.DIRECT",
        "INPUT.PROB",
        "SOLVER.WARMUP_ITERS",
    ):
        assert key in caplog.text


RENAMES = {  # DeMo's key -> today's
    "SOLVER.WARMUP_ITERS": "SOLVER.WARMUP_EPOCHS",
    "INPUT.PROB": "INPUT.FLIP_PROB",
    "MODEL.DIRECT": "MODEL.JOINT_ORI_HEAD",
    "TEST.MISS": "TEST.MISSING_MODALITIES",
}


def _legacy_lines(caplog, old):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(old)]


def test_old_names_in_a_file_load_as_the_new_keys_one_line_each(tmp_path, caplog):
    f = tmp_path / "old.yml"
    f.write_text(
        "_BASE_: "
        + os.path.abspath(SMOKE)
        + "\nMODEL:\n  DIRECT: 0\nINPUT:\n  PROB: 0.25\nSOLVER:\n  WARMUP_ITERS: 3\n"
        + "TEST:\n  MISS: nt\n"
    )
    with caplog.at_level(logging.WARNING):
        cfg = load_config(str(f))
    assert cfg.MODEL.JOINT_ORI_HEAD is False and cfg.INPUT.FLIP_PROB == 0.25
    assert cfg.SOLVER.WARMUP_EPOCHS == 3 and cfg.TEST.MISSING_MODALITIES == ("NI", "TI")
    for old, new in RENAMES.items():
        (line,) = _legacy_lines(caplog, old)
        assert new in line and "old.yml" in line and "\n" not in line
    assert "('NI', 'TI')" in _legacy_lines(caplog, "TEST.MISS")[0]
    new = ["MODEL.JOINT_ORI_HEAD", "False", "INPUT.FLIP_PROB", "0.25", "SOLVER.WARMUP_EPOCHS", "3"]
    assert load_config(SMOKE, [*new, "TEST.MISSING_MODALITIES", "('NI', 'TI')"]) == cfg


def test_old_names_as_overrides(caplog):
    opts = ["MODEL.DIRECT", "1", "INPUT.PROB", "0.0", "SOLVER.WARMUP_ITERS", "4", "TEST.MISS", "r"]
    with caplog.at_level(logging.WARNING):
        cfg = load_config("configs/RGBNT100/DeMo.yml", opts)
    assert cfg.MODEL.JOINT_ORI_HEAD is True and cfg.INPUT.FLIP_PROB == 0.0
    assert cfg.SOLVER.WARMUP_EPOCHS == 4 and cfg.TEST.MISSING_MODALITIES == ("RGB",)
    for old in RENAMES:
        (line,) = _legacy_lines(caplog, old)
        assert "command line" in line
    none = load_config(SMOKE, ["TEST.MISS", "nothing"])
    assert none.TEST.MISSING_MODALITIES == ()


def test_miss_letters_name_the_final_input_modalities_and_a_later_key_wins(tmp_path):
    f = tmp_path / "old.yml"
    f.write_text("_BASE_: " + os.path.abspath(SMOKE) + "\nTEST:\n  MISS: rt\n")
    # INPUT.MODALITIES set after the letters (on the command line) still decides what they name
    cfg = load_config(str(f), ["INPUT.MODALITIES", "('A', 'B', 'C')"])
    assert cfg.TEST.MISSING_MODALITIES == ("A", "C")
    later = load_config(str(f), ["TEST.MISSING_MODALITIES", "('NI',)"])
    assert later.TEST.MISSING_MODALITIES == ("NI",)
    g = tmp_path / "new.yml"
    g.write_text("_BASE_: " + os.path.abspath(SMOKE) + "\nTEST:\n  MISSING_MODALITIES: [NI]\n")
    assert load_config(str(g), ["TEST.MISS", "t"]).TEST.MISSING_MODALITIES == ("TI",)
    assert load_config(str(g), ["TEST.MISSING_MODALITIES", "()"]).TEST.MISSING_MODALITIES == ()


@pytest.mark.parametrize(
    "opts, message",
    [
        (
            ["MODEL.DIRECT", "2"],
            "MODEL.DIRECT (DeMo's name for MODEL.JOINT_ORI_HEAD) must be 0 or 1, got 2 (from "
            "command line); or write MODEL.JOINT_ORI_HEAD True / False",
        ),
        (
            ["TEST.MISS", "x"],
            "TEST.MISS (DeMo's name for TEST.MISSING_MODALITIES) 'x' (from command line) is not "
            "one of none, nothing, r, n, t, rn, rt, nt (r, n, t: the first, second, third of "
            "INPUT.MODALITIES); or write TEST.MISSING_MODALITIES with modality names, e.g. "
            "\"('TI',)\"",
        ),
        (
            ["TEST.MISSING_MODALITIES", "('IR',)"],
            "TEST.MISSING_MODALITIES ['IR']: ['IR'] not in INPUT.MODALITIES ['RGB', 'NI', 'TI']; "
            "write a tuple of their names, e.g. \"('TI',)\" or \"('RGB', 'NI')\"",
        ),
        (
            ["TEST.MISSING_MODALITIES", "('RGB', 'NI', 'TI')"],
            "TEST.MISSING_MODALITIES ['RGB', 'NI', 'TI'] leaves no modality to test with",
        ),
        (
            ["SOLVER.WARMUP_ITERS", "'ten'"],
            "SOLVER.WARMUP_EPOCHS expects int like 2, got 'ten' (from command line)",
        ),
    ],
)
def test_bad_values_of_renamed_keys_get_one_line(opts, message):
    with pytest.raises(ConfigError) as e:
        load_config(SMOKE, opts)
    assert str(e.value) == message


def test_choices_come_from_the_registries_and_loading_needs_no_torch():
    """config asks the backbone and dataset registries for the names (a lookup on use), and
    loading a config imports neither torch nor timm (tools/check_dataset.py starts fast)."""
    code = (
        "import json, sys; from config import load_config; "
        "load_config('configs/RGBNT201/DeMo.yml'); "
        "from modeling.backbones.specs import BACKBONE_REGISTRY as B; "
        "from data.datasets import DATASET_REGISTRY as D; "
        "print(json.dumps([[m for m in ('torch', 'timm') if m in sys.modules], B.names(), "
        "D.names()]))"
    )
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    loaded, backbones, datasets = json.loads(out.stdout)
    assert loaded == []
    for key, names in (("MODEL.TRANSFORMER_TYPE", backbones), ("DATASETS.NAMES", datasets)):
        with pytest.raises(ConfigError) as e:
            load_config(SMOKE, [key, "'Market1501'"])
        assert str(e.value).startswith(f"{key} 'Market1501' is not one of {tuple(names)}")


def test_saved_config_with_old_names_translates_for_comparison(caplog):
    saved = {  # a flattened config.yaml of a run from before the renames
        "INPUT.MODALITIES": ["A", "B", "C"],
        "SOLVER.WARMUP_ITERS": 2,
        "INPUT.PROB": 0.5,
        "MODEL.DIRECT": 1,
        "TEST.MISS": "n",
        "MODEL.HEAD": 4,
        "DERIVED.num_classes": 8,
    }
    with caplog.at_level(logging.WARNING):
        got = translate_keys(saved, "run/config.yaml")
    assert got == {
        "INPUT.MODALITIES": ["A", "B", "C"],
        "SOLVER.WARMUP_EPOCHS": 2,
        "INPUT.FLIP_PROB": 0.5,
        "MODEL.JOINT_ORI_HEAD": True,
        "TEST.MISSING_MODALITIES": ("B",),
        "MODEL.HEAD": 4,
    }
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and all("(from run/config.yaml)" in line for line in lines)


def test_dump_round_trip_ignores_info_sections(tmp_path):
    cfg = load_config("configs/_smoke/DeMo_SDTPS.yml", ["SOLVER.MAX_EPOCHS", "3"])
    path = str(tmp_path / "config.yaml")
    dump_config(cfg, path, derived={"num_classes": 8}, provenance={"git": "abc"})
    text = open(path).read()
    assert "DERIVED" in text and "PROVENANCE" in text and "USE_SDTPS: true" in text
    again = load_config(path)
    assert again == cfg


def test_shipped_configs_load_with_empty_pretrain_path():
    import glob

    files = glob.glob("configs/*/*.yml")
    assert len(files) >= 9
    for f in files:
        assert load_config(f).MODEL.PRETRAIN_PATH == ""


SMOKE = "configs/_smoke/DeMo.yml"


@pytest.mark.parametrize(
    "config, opts, key, fix",
    [
        # tiny_clip: patch 8 at stride 8, the non-overlapping patch embedding tiles the image
        (
            SMOKE,
            ["INPUT.SIZE_TRAIN", "[63, 31]", "INPUT.SIZE_TEST", "[63, 31]"],
            "INPUT.SIZE_TRAIN",
            "(64, 32)",
        ),
        (
            SMOKE,
            ["INPUT.SIZE_TRAIN", "[64, 4]", "INPUT.SIZE_TEST", "[64, 4]"],
            "INPUT.SIZE_TRAIN",
            "(64, 8)",
        ),
        # ViT-B-16 at stride 12 (overlapping): only the patch size 16 is a minimum
        (
            "configs/RGBNT201/DeMo.yml",
            [
                "MODEL.STRIDE_SIZE",
                "[12, 12]",
                "INPUT.SIZE_TRAIN",
                "[256, 15]",
                "INPUT.SIZE_TEST",
                "[256, 15]",
            ],
            "INPUT.SIZE_TRAIN",
            "(256, 16)",
        ),
        # the position embedding is built for SIZE_TRAIN's patch grid
        (SMOKE, ["INPUT.SIZE_TEST", "[72, 32]"], "INPUT.SIZE_TEST", "(64, 32)"),
    ],
)
def test_image_size_the_backbone_cannot_take(config, opts, key, fix):
    with pytest.raises(ConfigError) as e:
        load_config(config, opts)
    msg = str(e.value)
    assert msg.startswith(key) and fix in msg and "\n" not in msg


@pytest.mark.parametrize(
    "config, opts, grid",
    [
        ("configs/RGBNT201/DeMo.yml", ["MODEL.STRIDE_SIZE", "[12, 12]"], (21, 10)),  # 210 patches
        ("configs/RGBNT201/DeMo.yml", [], (16, 8)),
        ("configs/RGBNT100/DeMo.yml", [], (8, 16)),
        (SMOKE, [], (8, 4)),
        (
            SMOKE,
            [
                "MODEL.STRIDE_SIZE",
                "[6, 6]",
                "INPUT.SIZE_TRAIN",
                "[63, 31]",
                "INPUT.SIZE_TEST",
                "[63, 31]",
            ],
            (10, 4),
        ),  # overlapping patches: the remainder is left out
    ],
)
def test_image_sizes_the_backbone_takes(config, opts, grid):
    from modeling.backbones.vit import grid_size

    assert grid_size(load_config(config, opts)) == grid


def test_base_loop_names_the_files(tmp_path):
    (tmp_path / "a.yml").write_text("_BASE_: b.yml\nSOLVER:\n  BASE_LR: 0.1\n")
    (tmp_path / "b.yml").write_text("_BASE_: ./a.yml\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path / "a.yml"))
    msg = str(e.value)
    assert "_BASE_ loop" in msg and msg.count("a.yml") == 2 and "b.yml" in msg
    assert msg.index("a.yml") < msg.index("b.yml") < msg.rindex("a.yml")
    (tmp_path / "c.yml").write_text("_BASE_: c.yml\n")
    with pytest.raises(ConfigError, match="_BASE_ loop"):
        load_config(str(tmp_path / "c.yml"))


def test_shared_base_is_not_a_loop(tmp_path):
    (tmp_path / "base.yml").write_text("SOLVER:\n  BASE_LR: 0.1\n")
    (tmp_path / "mid.yml").write_text("_BASE_: base.yml\nSOLVER:\n  MAX_EPOCHS: 3\n")
    (tmp_path / "top.yml").write_text("_BASE_: mid.yml\n")
    cfg = load_config(str(tmp_path / "top.yml"))
    assert cfg.SOLVER.BASE_LR == 0.1 and cfg.SOLVER.MAX_EPOCHS == 3
