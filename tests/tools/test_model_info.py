"""tools/model_info.py on the tiny smoke configs (the full-size numbers are in its docstring
run).
"""

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
