"""Command lines of train_net.py / test_net.py: option spellings and config errors."""

import os
import subprocess
import sys

import pytest

from engine.defaults import argument_parser, load_cfg_or_exit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "configs", "_smoke", "DeMo.yml")


@pytest.mark.parametrize("flag", ["--config_file", "--config-file"])
def test_both_option_spellings_and_trailing_opts(flag):
    args = argument_parser("x").parse_args([flag, "a.yml", "SOLVER.BASE_LR", "1e-4"])
    assert args.config_file == "a.yml" and args.opts == ["SOLVER.BASE_LR", "1e-4"]


def _run(script, *argv):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, script), *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
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


@pytest.mark.slow
def test_test_net_without_weight_says_so(tmp_path):
    res = _run("test_net.py", "--config_file", SMOKE, "OUTPUT_DIR", str(tmp_path))
    assert res.returncode == 2
    assert "TEST.WEIGHT is empty" in res.stderr and "Traceback" not in res.stderr


def _parsed(module, monkeypatch, argv):
    """The namespace that `module.cli(argv)` hands to its main (which is not run)."""
    seen = []
    monkeypatch.setattr(module, "main", seen.append)
    module.cli(argv)
    (args,) = seen
    return args


@pytest.mark.parametrize(
    "argv, flags, opts",
    [
        (
            ["--config_file", SMOKE, "SOLVER.SEED", "3", "--resume"],
            {"resume": True},
            ["SOLVER.SEED", "3"],
        ),
        (
            ["SOLVER.SEED", "-1", "--eval-only", "TEST.IMS_PER_BATCH", "8", "--config-file", SMOKE],
            {"eval_only": True, "resume": False},
            ["SOLVER.SEED", "-1", "TEST.IMS_PER_BATCH", "8"],
        ),
        (["--resume", "--config_file", SMOKE], {"resume": True}, []),
    ],
)
def test_train_net_flags_after_overrides(monkeypatch, argv, flags, opts):
    import train_net

    args = _parsed(train_net, monkeypatch, argv)
    assert args.config_file == SMOKE and args.opts == opts
    assert {k: getattr(args, k) for k in flags} == flags


@pytest.mark.parametrize("tail", [["--split", "val"], ["--split=val"]])
def test_test_net_flags_after_overrides(monkeypatch, tail):
    import test_net

    args = _parsed(test_net, monkeypatch, ["--config_file", SMOKE, "TEST.WEIGHT", "w.pth", *tail])
    assert args.split == "val" and args.opts == ["TEST.WEIGHT", "w.pth"]


def test_unknown_flag_after_overrides_is_refused(monkeypatch, capsys):
    import train_net

    with pytest.raises(SystemExit) as exit_info:
        _parsed(train_net, monkeypatch, ["--config_file", SMOKE, "SOLVER.SEED", "3", "--resum"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--resum" in err and "--resume" in err


@pytest.mark.slow
def test_config_messages_reach_log_txt(synthetic_root, tmp_path):
    # A legacy DeMo key, and the exclusive switch turning DeMo.yml's HDM / ATM off: both are said
    # while the config loads, before the logger writes OUTPUT_DIR/log.txt.
    out = tmp_path / "run"
    res = _run(
        "train_net.py",
        "--config_file",
        SMOKE,
        "DATASETS.ROOT_DIR",
        synthetic_root,
        "OUTPUT_DIR",
        str(out),
        "MODEL.TRI_LOSS_WEIGHT",
        "1.0",
        "MODEL.USE_SDTPS",
        "True",
        "SOLVER.MAX_EPOCHS",
        "1",
        "SOLVER.IMS_PER_BATCH",
        "8",
        "DATALOADER.NUM_INSTANCE",
        "2",
        "SOLVER.WARMUP_EPOCHS",
        "1",
        "TEST.IMS_PER_BATCH",
        "16",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    log = (out / "log.txt").read_text()
    legacy = (
        "MODEL.TRI_LOSS_WEIGHT (from command line) is DeMo's name for MODEL.TRIPLET_LOSS_WEIGHT"
    )
    switch = "MODEL.HDM and MODEL.ATM are turned off (exclusive switch)"
    assert log.count(legacy) == 1 and log.count(switch) == 1
    assert log.index(legacy) < log.index(switch) < log.index("command:")
    assert res.stdout.count(switch) == 1 and switch not in res.stderr
