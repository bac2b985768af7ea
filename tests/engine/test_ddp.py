"""wrap_ddp on two gloo processes: after each step every rank holds the mean of the ranks' own
gradients, in float32 and through the bfloat16 all-reduce, over steps that drop the gradients
(zero_grad(set_to_none=True), as the trainer does), with unequal parameter sizes in one bucket."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from config import get_cfg
from engine.trainer import wrap_ddp


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 3))


def _worker(rank, port, dtype, errors):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        cfg = get_cfg()
        cfg.SOLVER.DDP_GRAD_DTYPE = dtype
        cfg.SOLVER.DDP_BUCKET_MB = 0.001  # several buckets over ~1,400 parameters
        ddp = wrap_ddp(_model(), cfg, torch.device("cpu"))
        plain = _model()
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        for step in range(3):
            x = torch.randn(5, 6, generator=torch.Generator().manual_seed(10 * step + rank))
            opt.zero_grad(set_to_none=True)
            ddp(x).square().sum().backward()
            plain.load_state_dict(ddp.module.state_dict())
            plain.zero_grad(set_to_none=True)
            plain(x).square().sum().backward()
            for (name, p), q in zip(ddp.module.named_parameters(), plain.parameters()):
                g = [torch.empty_like(q.grad) for _ in range(2)]
                dist.all_gather(g, q.grad)
                # bfloat16 keeps 8 significant bits of each rank's gradient
                scale = torch.stack(g).abs().max().item()
                tol = (0, 2**-7 * scale) if dtype == "bfloat16" else (1e-6, 1e-7)
                where = f"step {step}, {name}"
                torch.testing.assert_close(p.grad, (g[0] + g[1]) / 2, rtol=tol[0], atol=tol[1],
                                           msg=lambda m, where=where: f"{where}: {m}")
            opt.step()
    except Exception as e:  # reported by the parent: a child's traceback alone hides the cause
        errors.put(f"rank {rank}: {e!r}")
        raise
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_ranks_hold_the_mean_gradient(dtype):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    errors = mp.get_context("spawn").SimpleQueue()
    try:
        mp.spawn(_worker, args=(port, dtype, errors), nprocs=2)
    except mp.ProcessRaisedException:
        pass
    assert errors.empty(), errors.get()
