"""tools/model_info.py on the tiny smoke configs (the full-size numbers are in its docstring
run).
"""

import pytest

from tools.model_info import main


def test_model_info_demo(capsys):
    info = main(["--config_file", "configs/_smoke/DeMo.yml"])
    text = capsys.readouterr().out
    assert "trainable parameters:" in text and "GMACs" in text and "GFLOPs" in text
    assert info["gflops"] == info["gmacs"] * 2 > 0
    assert info["dims"] == {"ori": 192, "fused": 448}


def test_model_info_sdtps_token_flow(capsys):
    main(["--config_file", "configs/_smoke/DeMo_SDTPS.yml", "MODEL.STRIDE_SIZE", "(6, 6)"])
    assert "SDTPS: 50 -> 25 -> 10 + 1 per modality" in capsys.readouterr().out


def test_model_info_needs_a_class_count_where_none_is_recorded(capsys):
    """WMVEID863's train id count is not recorded: a one-line error, or --num-classes."""
    with pytest.raises(
        SystemExit, match="no train id count is recorded for WMVEID863; pass --num-classes N"
    ):
        main(["--config_file", "configs/_smoke/DeMo.yml", "DATASETS.NAMES", "WMVEID863"])
    info = main(
        [
            "--config_file",
            "configs/_smoke/DeMo.yml",
            "--num-classes",
            "9",
            "DATASETS.NAMES",
            "WMVEID863",
        ]
    )
    smoke = main(["--config_file", "configs/_smoke/DeMo.yml", "--num-classes", "9"])
    assert info["params_m"] > smoke["params_m"]  # 8 SIE cameras instead of RGBNT201's 4
