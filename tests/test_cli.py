"""Command lines of train_net.py / test_net.py: option spellings and config errors."""

import os
import subprocess
import sys

import pytest

from engine.launch import argument_parser, load_cfg_or_exit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "configs", "_smoke", "DeMo.yml")


@pytest.mark.parametrize("flag", ["--config_file", "--config-file"])
def test_both_option_spellings_and_trailing_opts(flag):
    args = argument_parser("x").parse_args([flag, "a.yml", "SOLVER.BASE_LR", "1e-4"])
    assert args.config_file == "a.yml" and args.opts == ["SOLVER.BASE_LR", "1e-4"]


def _run(script, *argv):
    return subprocess.run([sys.executable, os.path.join(REPO, script), *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_config_error_is_one_line_and_exit_2():
    res = _run("train_net.py", "--config-file", SMOKE, "SOLVER.BASE_LRR", "1")
    assert res.returncode == 2
    errors = [x for x in res.stderr.splitlines() if x.startswith("config error")]
    assert len(errors) == 1 and "SOLVER.BASE_LRR" in errors[0]
    assert "Traceback" not in res.stderr


def test_wrong_type_names_the_key(capsys):
    args = argument_parser("x").parse_args(["--config_file", SMOKE, "SOLVER.MAX_EPOCHS", "many"])
    with pytest.raises(SystemExit) as exit_info:
        load_cfg_or_exit(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "SOLVER.MAX_EPOCHS" in err


def test_test_net_without_weight_says_so(tmp_path):
    res = _run("test_net.py", "--config_file", SMOKE, "OUTPUT_DIR", str(tmp_path))
    assert res.returncode == 2
    assert "TEST.WEIGHT is empty" in res.stderr and "Traceback" not in res.stderr
