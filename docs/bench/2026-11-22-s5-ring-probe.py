"""Probe (session 5, H100): shared memory page-locked with cudaHostRegister; copy speeds.

    python3 docs/bench/2026-11-22-s5-ring-probe.py        (log: 2026-11-22-s5-h100-ring-probe.log)

The fork part did not answer: the child, forked after the parent had initialised CUDA, never
finished its fill (exit code None after 20 s; the cause was not looked into) and the script then
hung at exit. So the loader locks its ring only after its (persistent) workers are forked, and
never forks them again.
"""

import multiprocessing as mp
import time

import torch

t = torch.empty((30, 3, 128, 256, 128, 3), dtype=torch.uint8)
t0 = time.perf_counter()
t.share_memory_()
print("share_memory_ s", round(time.perf_counter() - t0, 3), "GB", t.numel() / 1e9, flush=True)
cudart = torch.cuda.cudart()
t0 = time.perf_counter()
rc = cudart.cudaHostRegister(t.data_ptr(), t.numel(), 0)
torch.cuda.synchronize()
print("register rc", int(rc), "s", round(time.perf_counter() - t0, 3), "is_pinned", t.is_pinned(),
      flush=True)


def child(q):
    try:
        t[1].fill_(7)
        q.put("ok")
    except Exception as e:
        q.put(repr(e))


ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
p.join(20)
print("fork after register: exitcode", p.exitcode, "msg", q.get() if p.exitcode == 0 else None,
      "parent sees", int(t[1].float().mean()), flush=True)
dev = torch.device("cuda")
x = t[0, 0]
y = torch.empty(x.shape, dtype=x.dtype, device=dev)
for _ in range(3):
    y.copy_(x, non_blocking=True)
torch.cuda.synchronize()
t0 = time.perf_counter()
for i in range(20):
    y.copy_(t[i % 30, i % 3], non_blocking=True)
torch.cuda.synchronize()
dt = (time.perf_counter() - t0) / 20
print("H2D from registered shared", round(x.numel() / dt / 1e9, 1), "GB/s", flush=True)
u = torch.empty_like(t[0, 0]).share_memory_()
torch.cuda.synchronize()
t0 = time.perf_counter()
for _ in range(10):
    y.copy_(u, non_blocking=True)
torch.cuda.synchronize()
print("H2D from pageable shared", round(u.numel() * 10 / (time.perf_counter() - t0) / 1e9, 1),
      "GB/s", flush=True)
pm = u.pin_memory()
t0 = time.perf_counter()
for _ in range(10):
    pm.copy_(u)
print("memcpy shared->pinned", round(u.numel() * 10 / (time.perf_counter() - t0) / 1e9, 1), "GB/s",
      flush=True)
t0 = time.perf_counter()
print("unregister rc", int(cudart.cudaHostUnregister(t.data_ptr())),
      round(time.perf_counter() - t0, 3))
