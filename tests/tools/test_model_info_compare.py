"""tools/model_info.py --compare: baseline, DeMo and DeMo_SDTPS side by side."""

from tools.model_info import main


def test_compare_full_size_parameters(capsys):
    rows = main(
        ["--config_file", "configs/RGBNT201/DeMo.yml", "--compare", "--no-latency", "--no-flops"]
    )
    text = capsys.readouterr().out
    assert list(rows) == ["baseline", "DeMo", "DeMo_SDTPS"]
    assert "|      86.41 |" in text.splitlines()[3]  # DeMo's plain-baseline row
    assert rows["DeMo"]["params_m"] > rows["DeMo_SDTPS"]["params_m"] > rows["baseline"]["params_m"]


def test_compare_smoke_with_cost_and_latency(capsys):
    rows = main(
        [
            "--config_file",
            "configs/_smoke/DeMo_SDTPS.yml",
            "--compare",
            "--batch",
            "2",
            "--reps",
            "2",
        ]
    )
    text = capsys.readouterr().out
    for name in ("baseline", "DeMo", "DeMo_SDTPS"):
        assert f"| {name}" in text
        assert rows[name]["gmacs"] > 0 and rows[name]["latency_ms"] > 0
    assert "latency (ms, batch 2)" in text and "measured on cpu" in text
