import logging

import pytest

from config import ConfigError, dump_config, get_cfg, load_config

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
    assert vehicles.MODEL.HEAD == 8 and vehicles.MODEL.DIRECT == 0
    assert vehicles.SOLVER.WARMUP_ITERS == 5 and vehicles.INPUT.SIZE_TRAIN == (128, 256)


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
        (["TEST.GALLERY_MODALITIES", "('NI',)", "TEST.MISS", "r"], "TEST.GALLERY_MODALITIES"),
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
    assert cfg.TEST.MISS == "none" and cfg.DATASETS.NAMES == "RGBNT201"
    for key in (
        "MODEL.PRETRAIN_PATH_T",
        "MODEL.FROZEN",
        "TEST.FEAT_NORM",
        "TEST.MISS",
        "SOLVER.GAMMA",
    ):
        assert key in caplog.text


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
