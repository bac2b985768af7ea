"""Ranks and collectives; torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""

import atexit
import datetime
import os
import pickle

import torch
import torch.distributed as dist


def is_dist():
    return dist.is_available() and dist.is_initialized()


def get_rank():
    return dist.get_rank() if is_dist() else 0


def get_world_size():
    return dist.get_world_size() if is_dist() else 1


def get_local_rank():
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main_process():
    return get_rank() == 0


def synchronize():
    if is_dist() and get_world_size() > 1:
        dist.barrier()


def init_distributed(device_type):
    """Join the process group when launched by torchrun; a no-op for a single process."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or is_dist():
        return
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(get_local_rank())
    dist.init_process_group(backend=backend)
    # Leave the group before the interpreter tears down: a rank that exits with the group still
    # alive can abort in the backend's threads ("terminate called without an active exception").
    atexit.register(leave_distributed)


def leave_distributed():
    """Leave the process group once every rank is done with it: a rank that tears its group down
    while another still talks to it can abort in the backend's threads at exit."""
    if not is_dist():
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=20))
        else:
            dist.barrier()
    except Exception:  # noqa: BLE001  a rank already gone (it failed): leave without waiting
        pass
    dist.destroy_process_group()


def all_gather_object(obj):
    """List of `obj` from every rank, in rank order."""
    if get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src=0):
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def reduce_mean(tensor):
    """Mean of a tensor over ranks (for logging)."""
    if get_world_size() == 1:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor / get_world_size()


def object_size(obj):
    return len(pickle.dumps(obj))


def gather_object(obj, dst=0):
    """List of `obj` from every rank on `dst` (rank order); None on the other ranks."""
    if get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size() if get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def all_reduce_max(tensor):
    """Element-wise max over ranks (in place); a no-op for a single process."""
    if get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor
