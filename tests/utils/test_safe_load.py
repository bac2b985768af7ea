"""utils.safe_load: what loads (torch.save files of either format, TorchScript weights), and
damaged files refused with one line naming them. Hostile files: tests/test_hostile_files.py."""

import os
import re
import warnings
import zipfile

import pytest
import torch
from torch import nn

from config import load_config
from modeling import build_model, load_weights
from utils.safe_load import (
    WeightsFileError,
    WeightsFileNotFoundError,
    load_file,
    read_torchscript,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("zipped", [True, False])
def test_plain_tensor_files_load_in_both_formats(tmp_path, zipped):
    """weights_only reads the legacy (non-zip) format too: plain tensors are not refused."""
    torch.manual_seed(0)
    state = {
        "model": {"w": torch.randn(3, 4).half(), "n": torch.arange(3)},
        "epoch": 2,
        "rng": {"python": (3, tuple(range(5)), None)},
        "cfg": "MODEL: {}\n",
    }
    path = tmp_path / "state.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zipped)
    assert zipfile.is_zipfile(path) == zipped
    got = load_file(path)
    assert got["epoch"] == 2 and got["rng"] == state["rng"] and got["cfg"] == state["cfg"]
    for k, v in state["model"].items():
        assert got["model"][k].dtype == v.dtype and torch.equal(got["model"][k], v)


def test_legacy_format_model_checkpoint_loads_into_the_model(tmp_path):
    cfg = load_config(os.path.join(REPO, "configs", "_smoke", "DeMo.yml"), [])
    torch.manual_seed(0)
    src = build_model(cfg, 5, 4)
    path = tmp_path / "legacy.pth"
    torch.save({"model": src.state_dict()}, path, _use_new_zipfile_serialization=False)
    torch.manual_seed(1)
    dst = build_model(cfg, 5, 4)
    assert load_weights(dst, str(path), cfg) == len(src.state_dict())
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())


def test_missing_file_names_path_and_key(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"MODEL\.PRETRAIN_PATH .*nope\.pth"):
        load_file(path, "MODEL.PRETRAIN_PATH")
    with pytest.raises(WeightsFileError):  # the CLIs turn this one into a line too
        load_file(path)
    assert issubclass(WeightsFileNotFoundError, ValueError)


def _scripted(tmp_path):
    """A scripted module with one 7-element fp32 parameter -> archive path."""
    module = nn.Module()
    module.w = nn.Parameter(torch.arange(7.0))
    path = tmp_path / "m.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def _rewrite(src, dst, change):
    """Copy a zip, passing each entry's (name, bytes) through change."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, change(name, zin.read(name)))


def test_scripted_module_without_forward_reads(tmp_path):
    got = read_torchscript(_scripted(tmp_path))
    assert list(got) == ["w"] and torch.equal(got["w"], torch.arange(7.0))


def test_archive_without_buffers_line_reads_as_jit_load_does(tmp_path):
    """Older archives have no __buffers__ line: no buffers, for torch.jit.load and the reader."""
    module = nn.Sequential(nn.BatchNorm1d(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(module), str(tmp_path / "bn.pt"))
        _rewrite(
            tmp_path / "bn.pt",
            tmp_path / "old.pt",
            lambda n, b: re.sub(rb"\n +__buffers__ = \[.*\]", b"", b) if n.endswith(".py") else b,
        )
        for name, keys in (("bn.pt", 5), ("old.pt", 2)):
            ref = torch.jit.load(str(tmp_path / name)).state_dict()
            got = read_torchscript(tmp_path / name)
            assert list(got) == list(ref) and len(got) == keys
            assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_damaged_torchscript_archives_are_refused(tmp_path):
    path = _scripted(tmp_path)
    short = tmp_path / "short.pt"
    _rewrite(path, short, lambda n, b: b[:-4] if n.endswith("/data/0") else b)
    with pytest.raises(WeightsFileError, match=r"short\.pt cannot be read .*24 bytes, not 7 x 4"):
        load_file(short)

    def grow(name, data):
        # The size tuple (7,) follows the storage id (..., 7): make the tensor 9 long.
        if not name.endswith("/data.pkl"):
            return data
        assert data.count(b"K\x07") == 2
        head, tail = data.rsplit(b"K\x07", 1)
        return head + b"K\x09" + tail

    past = tmp_path / "past.pt"
    _rewrite(path, past, grow)
    with pytest.raises(WeightsFileError, match=r"past\.pt cannot be read .*reaches past"):
        load_file(past)

    no_code = tmp_path / "no_code.pt"
    _rewrite(path, no_code, lambda n, b: b if "/code/" not in n else b"")
    with pytest.raises(WeightsFileError, match=r"no_code\.pt .*not defined"):
        load_file(no_code)


def test_big_endian_archive_is_refused(tmp_path):
    path = _scripted(tmp_path)
    big = tmp_path / "big.pt"
    _rewrite(path, big, lambda n, b: b"big" if n.endswith("/byteorder") else b)
    with pytest.raises(WeightsFileError, match=r"big\.pt .*'big'-endian"):
        load_file(big)


def test_a_file_of_one_tensor_is_not_a_checkpoint(tmp_path):
    cfg = load_config(os.path.join(REPO, "configs", "_smoke", "DeMo.yml"), [])
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(WeightsFileError, match=r"tensor\.pth holds a Tensor, not a state dict"):
        load_weights(build_model(cfg, 5, 4), str(path), cfg)


def test_module_that_contains_itself_is_refused(tmp_path):
    # data.pkl by hand: m = __torch__.M(); m.__setstate__({"child": m})
    data = b"\x80\x02c__torch__\nM\n)\x81q\x00}X\x05\x00\x00\x00childh\x00sb."
    path = tmp_path / "loop.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("loop/data.pkl", data)
        z.writestr("loop/constants.pkl", b"\x80\x02).")
        z.writestr(
            "loop/code/__torch__.py",
            "class M(Module):\n  __parameters__ = []\n  __buffers__ = []\n",
        )
    with pytest.raises(WeightsFileError, match=r"loop\.pt .*child\. contains itself"):
        load_file(path)
