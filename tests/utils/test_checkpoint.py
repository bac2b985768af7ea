"""Atomic writes, background writes, rotation, RNG round trip."""

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from utils.checkpoint import Checkpointer, atomic_save, read_last, rng_state, set_rng_state


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / "last.pth")
    atomic_save({"epoch": 1}, path)

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}


def test_rotation_and_last_marker(tmp_path):
    model = nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters())
    ck = Checkpointer(str(tmp_path), model, opt, keep=2)
    for epoch in range(1, 5):
        ck.save(f"model_{epoch:04d}.pth", epoch)
        ck.save("last.pth", epoch, mark_last=True)
    ck.wait()
    names = sorted(n for n in os.listdir(tmp_path) if n.startswith("model_"))
    assert names == ["model_0003.pth", "model_0004.pth"]
    assert read_last(str(tmp_path)).endswith("last.pth")
    assert not any(".tmp" in n for n in os.listdir(tmp_path))


def test_load_restores_model_optimizer_and_rng(tmp_path):
    torch.manual_seed(3)
    model = nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    ck = Checkpointer(str(tmp_path), model, opt)
    ck.save("last.pth", 7, extra={"best_val_mAP": 1.5}, mark_last=True)
    ck.wait()
    expected = (random.random(), np.random.rand(), torch.rand(1))

    other = nn.Linear(2, 2)
    other_opt = torch.optim.Adam(other.parameters(), lr=0.1)
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    epoch, extra = Checkpointer(str(tmp_path), other, other_opt).load(read_last(str(tmp_path)))
    assert epoch == 7 and extra == {"best_val_mAP": 1.5}
    assert torch.equal(other.weight, model.weight)
    assert other_opt.state_dict()["state"][0]["step"] == 1
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(1), expected[2])


def test_background_write_holds_the_state_at_save_time(tmp_path):
    model = nn.Linear(2, 2)
    ck = Checkpointer(str(tmp_path), model)
    before = model.weight.detach().clone()
    ck.save("last.pth", 1, mark_last=True)
    with torch.no_grad():  # training goes on while the file is written
        model.weight.add_(1.0)
    ck.wait()
    saved = torch.load(read_last(str(tmp_path)), weights_only=True)["model"]["weight"]
    assert torch.equal(saved, before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (GPU host only)")
def test_gpu_state_through_reused_pinned_buffers(tmp_path):
    model = nn.Linear(64, 64).cuda()
    opt = torch.optim.Adam(model.parameters())
    ck = Checkpointer(str(tmp_path), model, opt)
    saved = []
    for epoch in (1, 2):
        model(torch.randn(8, 64, device="cuda")).sum().backward()
        opt.step()
        saved.append({k: v.cpu() for k, v in model.state_dict().items()})
        ck.save(f"e{epoch}.pth", epoch)
        with torch.no_grad():  # training goes on while the file is written
            model.weight.add_(1.0)
    ck.wait()
    on_gpu = [t for t in model.state_dict().values()] + [
        t for st in opt.state.values() for t in st.values() if torch.is_tensor(t) and t.is_cuda
    ]
    assert len(ck._pinned) == len(on_gpu)  # one buffer per GPU tensor, reused by the second save
    for epoch, want in zip((1, 2), saved):
        got = torch.load(tmp_path / f"e{epoch}.pth", weights_only=True)
        assert all(torch.equal(got["model"][k], v) for k, v in want.items())
        assert got["optimizer"]["state"][0]["step"] == epoch


def test_failed_background_write_raises_at_the_next_wait_and_keeps_the_old_file(
    tmp_path, monkeypatch
):
    ck = Checkpointer(str(tmp_path), nn.Linear(2, 2))
    ck.save("last.pth", 1, mark_last=True)
    ck.wait()

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    ck.save("last.pth", 2, mark_last=True)
    with pytest.raises(RuntimeError, match=r"last\.pth failed: OSError\('disk full'\)"):
        ck.wait()
    monkeypatch.undo()
    ck.wait()  # the error is reported once
    assert torch.load(read_last(str(tmp_path)), weights_only=True)["epoch"] == 1
    assert not any(".tmp" in n for n in os.listdir(tmp_path))


def test_rng_state_round_trip():
    state = rng_state()
    a = torch.randn(3), np.random.rand(), random.random()
    set_rng_state(state)
    b = torch.randn(3), np.random.rand(), random.random()
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
