"""Hostile weights files fed to every entry point that reads one: no code runs, and the error is
one line naming the file.

Each hostile payload creates a marker file when it runs; `test_payload_is_live` proves that the
unsafe loaders (pickle / torch.load(weights_only=False) / torch.jit.load) do run it, so the
entry-point tests would see the marker if a loader ever fell back to them. The entry points are
tested through the function each one calls (`load_weights` for TEST.WEIGHT in test_net.py,
train_net.py --eval-only and the tools, `load_pretrained` for MODEL.PRETRAIN_PATH,
`Checkpointer.load` for --resume, the tools' own readers), plus one run of each CLI.
"""

import builtins
import logging
import os
import pickle
import random
import shlex
import subprocess
import sys
import warnings
import zipfile

import pytest
import torch

import train_net
from config import load_config
from engine import defaults
from modeling import build_model, load_weights
from modeling.backbones.checkpoint import load_pretrained
from tools import convert_demo_checkpoint
from utils.checkpoint import LAST, Checkpointer, read_last
from utils.safe_load import WeightsFileError, load_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "configs", "_smoke", "DeMo.yml")


class _System:
    """Unpickling it runs `touch marker` through os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


class _Exec:
    """Unpickling it creates the marker through builtins.exec."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


class _SetstateCreatesFile(torch.nn.Module):
    """A module whose scripted __setstate__ creates the file its state names (torch.from_file
    with shared=True creates it): torch.jit.load runs that TorchScript code."""

    def __init__(self, marker: str):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2))
        self.marker = marker

    def forward(self, x):
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return (self.weight, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]):
        self.marker = state[1]
        self.training = state[2]
        made = torch.from_file(state[1], True, 1, dtype=torch.uint8)
        self.weight = state[0] + made.float().sum() * 0


class _Outer(torch.nn.Module):
    def __init__(self, marker: str):
        super().__init__()
        self.inner = _SetstateCreatesFile(marker)

    def forward(self, x):
        return self.inner(x)


def _state(payload):
    """A checkpoint-shaped dict with the payload beside real tensors."""
    return {"model": {"w": torch.zeros(2)}, "epoch": 1, "payload": payload}


def _torchscript_shaped(path, marker, protocol=2):
    """A zip laid out like a TorchScript archive whose data.pkl holds the payload."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(_System(marker), protocol=protocol))
        z.writestr("archive/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr(
            "archive/code/__torch__/evil.py",
            "class Evil(Module):\n  __parameters__ = []\n  __buffers__ = []\n",
        )
        z.writestr("archive/version", "3\n")


def _write(kind, path, marker):
    if kind == "torch_save":
        torch.save(_state(_System(marker)), path)
    elif kind == "pickle":
        with open(path, "wb") as f:
            pickle.dump(_state(_Exec(marker)), f, protocol=2)
    elif kind == "legacy":
        torch.save(_state(_System(marker)), path, _use_new_zipfile_serialization=False)
    elif kind == "torchscript_shaped":
        _torchscript_shaped(path, marker)
    elif kind == "torchscript_setstate":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(torch.jit.script(_Outer(marker)), str(path))
    elif kind == "random":
        path.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        torch.save({"model": {"w": torch.zeros(4096)}}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        raise AssertionError(kind)


LIVE = ("torch_save", "pickle", "legacy", "torchscript_setstate")  # payloads that can run
KINDS = (*LIVE, "torchscript_shaped", "random", "empty", "truncated")


@pytest.fixture
def hostile(tmp_path):
    """hostile(kind) -> (path of the file, marker path that appears if its code runs)."""

    def make(kind, name="weights.pth"):
        marker = str(tmp_path / f"MARKER_{kind}")
        path = tmp_path / name
        _write(kind, path, marker)
        assert not os.path.exists(marker), "writing the file ran the payload"
        return path, marker

    return make


def _unsafe_load(kind, path):
    if kind == "pickle":
        with open(path, "rb") as f:
            pickle.load(f)
    elif kind == "torchscript_setstate":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.load(str(path))
    else:
        torch.load(path, weights_only=False)


@pytest.mark.parametrize("kind", LIVE)
def test_payload_is_live(hostile, kind):
    """The payloads do run under the unpickling the safe reader must never use."""
    path, marker = hostile(kind)
    _unsafe_load(kind, path)
    assert os.path.exists(marker)


@pytest.mark.parametrize("protocol", [0, 4, 5])
def test_torchscript_shaped_refused_in_every_pickle_protocol(tmp_path, protocol):
    """GLOBAL (protocols 0-3) and STACK_GLOBAL (4, 5) both go through the allow-list."""
    path, marker = tmp_path / "archive.pt", str(tmp_path / "MARKER")
    _torchscript_shaped(path, marker, protocol)
    with pytest.raises(WeightsFileError, match="posix.system"):
        load_file(path)
    assert not os.path.exists(marker)


@pytest.fixture(scope="module")
def ctx():
    cfg = load_config(SMOKE, [])
    torch.manual_seed(0)
    return cfg, build_model(cfg, 8, 4)


def _test_weight(ctx, path, tmp_path):
    cfg, model = ctx
    load_weights(model, str(path), cfg)


def _pretrain_path(ctx, path, tmp_path):
    load_pretrained(ctx[1].backbone, str(path))


def _resume(ctx, path, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    os.replace(path, out / "last.pth")
    (out / LAST).write_text("last.pth")
    Checkpointer(str(out), ctx[1]).load(read_last(str(out)))


def _convert_demo(ctx, path, tmp_path):
    dst = tmp_path / "converted.pth"
    try:
        convert_demo_checkpoint.convert(ctx[0], str(path), str(dst))
    finally:
        assert not dst.exists()


def _extract_features(ctx, path, tmp_path):
    cfg = load_config(SMOKE, ["TEST.WEIGHT", str(path)])
    defaults.load_model(cfg, torch.device("cpu"))


ENTRY_POINTS = {
    "TEST.WEIGHT": _test_weight,
    "MODEL.PRETRAIN_PATH": _pretrain_path,
    "--resume": _resume,
    "convert_demo_checkpoint": _convert_demo,
    "extract_features": _extract_features,
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_entry_point_refuses_without_running_code(ctx, hostile, tmp_path, entry, kind):
    path, marker = hostile(kind)
    shown = str(tmp_path / "run" / "last.pth") if entry == "--resume" else str(path)
    with pytest.raises(WeightsFileError) as info:
        ENTRY_POINTS[entry](ctx, path, tmp_path)
    assert not os.path.exists(marker)
    message = str(info.value)
    assert shown in message and "\n" not in message, message


@pytest.fixture
def keep_logging():
    """train_net sets up the root logger; give pytest its handlers back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _one_error_line(err, path):
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and str(path) in lines[0], err
    assert "Traceback" not in err


@pytest.mark.slow  # a fresh interpreter importing torch: ~13 s on 2 cores
def test_test_net_cli_one_line_and_no_code(hostile, synthetic_root, tmp_path):
    path, marker = hostile("torch_save")
    res = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "test_net.py"),
            "--config_file",
            SMOKE,
            "DATASETS.ROOT_DIR",
            synthetic_root,
            "OUTPUT_DIR",
            str(tmp_path / "out"),
            "TEST.WEIGHT",
            str(path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode != 0
    assert not os.path.exists(marker)
    _one_error_line(res.stderr, path)


def test_train_net_eval_only_cli_one_line_and_no_code(
    hostile, synthetic_root, tmp_path, capsys, keep_logging
):
    path, marker = hostile("legacy")
    with pytest.raises(SystemExit) as info:
        train_net.cli(
            [
                "--config_file",
                SMOKE,
                "--eval-only",
                "DATASETS.ROOT_DIR",
                synthetic_root,
                "OUTPUT_DIR",
                str(tmp_path / "out"),
                "TEST.WEIGHT",
                str(path),
            ]
        )
    assert info.value.code != 0
    assert not os.path.exists(marker)
    _one_error_line(capsys.readouterr().err, path)
