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
                torch.testing.assert_close(
                    p.grad,
                    (g[0] + g[1]) / 2,
                    rtol=tol[0],
                    atol=tol[1],
                    msg=lambda m, where=where: f"{where}: {m}",
                )
            opt.step()
    except Exception as e:  # reported by the parent: a child's traceback alone hides the cause
        errors.put(f"rank {rank}: {e!r}")
        raise
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
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


class _BNModel(nn.Module):
    """A BatchNorm whose running statistics follow each rank's own batches."""

    patterns = (1,)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Linear(4, 8)
        self.head = nn.BatchNorm1d(8)

    def forward(self, batch):
        y = self.head(self.backbone(batch["images"]["RGB"]))
        return {"ori": y} if not self.training else {"loss_sq": y.square().mean()}


class _RankLoader:
    """Two batches an epoch, different on each rank (mean shifted by the rank)."""

    def __init__(self, rank):
        self.rank, self.epoch = rank, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return 2

    def close(self):
        pass

    def __iter__(self):
        for i in range(2):
            g = torch.Generator().manual_seed(100 * self.epoch + 10 * i + self.rank)
            yield {"images": {"RGB": torch.randn(6, 4, generator=g) + 3 * self.rank}}


def _buffers_worker(rank, port, out, errors):
    from config import load_config
    from engine import Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        cfg = load_config(
            None,
            [
                "OUTPUT_DIR",
                out,
                "MODEL.DEVICE",
                "cpu",
                "SOLVER.MAX_EPOCHS",
                2,
                "SOLVER.WARMUP_EPOCHS",
                1,
                "SOLVER.EVAL_PERIOD",
                1,
                "SOLVER.IMS_PER_BATCH",
                8,
                "DATALOADER.NUM_INSTANCE",
                4,
            ],
        )
        seen = []

        def evaluator(model, split, writer, step, epoch):
            state = {k: v.clone() for k, v in model.state_dict().items()}
            gathered = [None, None]
            dist.all_gather_object(gathered, state)
            seen.append(gathered)
            return {1: {"mAP": 0.0}}

        model = _BNModel()
        Trainer(cfg, model, _RankLoader(rank), evaluator).train()
        for epoch, (a, b) in enumerate(seen, start=1):
            for k in a:
                assert torch.equal(a[k], b[k]), f"epoch {epoch}: {k} differs between the ranks"
        if rank == 0:
            saved = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["model"]
            for k, v in model.state_dict().items():
                assert torch.equal(saved[k], v), f"model_final.pth {k} is not the evaluated one"
    except BaseException as e:
        errors.put(f"rank {rank}: {e!r}")
        raise
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_every_rank_evaluates_and_saves_rank_0s_buffers(tmp_path):
    """Rank-local BatchNorm statistics after the last step would make each rank rank its shard
    with another model than the one saved; the trainer broadcasts rank 0's before both."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    errors = mp.get_context("spawn").SimpleQueue()
    try:
        mp.spawn(_buffers_worker, args=(port, str(tmp_path), errors), nprocs=2)
    except mp.ProcessRaisedException:
        pass
    assert errors.empty(), errors.get()
