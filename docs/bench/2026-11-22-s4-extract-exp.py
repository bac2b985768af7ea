"""Session 4's extraction experiment (H100; log 2026-11-22-s4-h100-extract-exp.log).

    python3 docs/bench/2026-11-22-s4-extract-exp.py /tmp/bench [WORKERS]

In one process, on 20,000 triplets of the synthetic RGBNT201 set: extract_features as it was
(copy on the compute stream), the test loader alone (with its time to the first batch), the copy
on a side stream (how data/build.py now does it), the pixels of nvJPEG (torchvision's GPU decoder)
against libjpeg-turbo's, and decoding on the GPU from JPEG bytes read by the workers. The last part
hung in its first loader (its workers were forked after nvJPEG had started its threads) and was
stopped by the faulthandler; its rates were never measured.
"""

import faulthandler
import os
import queue
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
faulthandler.dump_traceback_later(560, exit=True)

import torch  # noqa: E402
from torch.utils.data import BatchSampler, DataLoader, Dataset  # noqa: E402
from torchvision.io import ImageReadMode, decode_jpeg, read_file  # noqa: E402

import data.build as db  # noqa: E402
from config import load_config  # noqa: E402
from data import build_dataset, build_test_loader  # noqa: E402
from data.transforms import BatchTransform, read_pixels  # noqa: E402
from engine.evaluator import extract_features  # noqa: E402
from engine.launch import autocast, compile_model, setup  # noqa: E402
from modeling import build_model  # noqa: E402

N = 20_000
root = sys.argv[1]
workers = int(sys.argv[2]) if len(sys.argv) > 2 else 14
cfg = load_config("configs/RGBNT201/DeMo.yml", [
    "DATASETS.ROOT_DIR", root, "OUTPUT_DIR", "/tmp/xo", "DATALOADER.NUM_WORKERS", workers,
    "SOLVER.COMPILE", True, "SOLVER.COMPILE_MODE", "reduce-overhead"])
device = setup(cfg)
splits = build_dataset(cfg)
model = build_model(cfg, splits.num_train_pids, splits.num_cameras).to(device)
records = list(splits.train) + list(splits.gallery)
records = (records * (N // len(records) + 1))[:N]
mods = cfg.INPUT.MODALITIES


def report(**kw):
    print(kw, flush=True)


def rate(fn):
    """Triplets/s of fn() over the N records, the device synchronised on both ends."""
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return round(N / (time.perf_counter() - t))


# Extraction as it was: the copy queued on the compute stream.
extract_features(cfg, model, records[:512])
for rep in range(2):
    report(v="baseline_e2e", rep=rep, tps=rate(lambda: extract_features(cfg, model, records)))

# The test loader alone, and its time to the first batch.
torch.cuda.synchronize()
t = time.perf_counter()
it = iter(build_test_loader(cfg, records, device=device))
n = len(next(it)["paths"])
torch.cuda.synchronize()
first = time.perf_counter() - t
n += sum(len(b["paths"]) for b in it)
torch.cuda.synchronize()
report(v="loader", first_batch_s=round(first, 3), tps=round(n / (time.perf_counter() - t)))

# The copy on a side stream.
plain_finish, copy_stream = db.DeviceLoader.finish, torch.cuda.Stream()


def side_finish(self, batch):
    with torch.cuda.stream(copy_stream):
        moved = db.to_device(batch, self.device)
    torch.cuda.current_stream().wait_stream(copy_stream)
    for x in list(moved["images"].values()) + [v for v in moved.values() if torch.is_tensor(v)]:
        x.record_stream(torch.cuda.current_stream())
    return self.transform(moved)


db.DeviceLoader.finish = side_finish
report(v="sidestream_e2e", tps=rate(lambda: extract_features(cfg, model, records)))
db.DeviceLoader.finish = plain_finish

# nvJPEG's pixels against libjpeg-turbo's.
cpu = read_pixels(records[0], cfg.INPUT.SIZE_TEST)
for m in mods:
    gpu = decode_jpeg([read_file(records[0].files[m])], mode=ImageReadMode.RGB, device="cuda")
    d = (gpu[0].cpu().int() - cpu[m].int()).abs()
    report(v="pixels", mod=m, max=int(d.max()), mean=round(float(d.float().mean()), 4))


# Decoding on the GPU: the workers only read the JPEG bytes.
class JpegBytes(Dataset):
    def __len__(self):
        return len(records)

    def __getitem__(self, i):
        return {m: read_file(records[i].files[m]) for m in mods}, i


def collate(items):
    return {m: [x[0][m] for x in items] for m in mods}, torch.tensor([x[1] for x in items])


def bytes_loader(n_workers, bs=128):
    return DataLoader(JpegBytes(), batch_sampler=BatchSampler(range(N), bs, False),
                      collate_fn=collate, num_workers=n_workers, prefetch_factor=4)


def decode(jpegs):
    return {m: torch.stack(decode_jpeg(jpegs[m], mode=ImageReadMode.RGB, device="cuda"))
            for m in mods}


def decode_only(n_workers):
    for jpegs, _ in bytes_loader(n_workers):
        decode(jpegs)


for w in (4, 8):
    report(v="gpu_decode_only", workers=w, tps=rate(lambda w=w: decode_only(w)))

normalise, forward = BatchTransform(cfg, False), compile_model(cfg, model)
model.eval()


@torch.no_grad()
def gpu_decode_e2e(n_workers, threaded, bs=128):
    loader = bytes_loader(n_workers, bs)
    if threaded:  # decoding in a thread of its own, two batches ahead
        q = queue.Queue(maxsize=3)

        def produce():
            for jpegs, idx in loader:
                q.put((decode(jpegs), idx))
            q.put(None)

        threading.Thread(target=produce, daemon=True).start()
        batches = iter(q.get, None)
    else:
        batches = ((decode(jpegs), idx) for jpegs, idx in loader)
    for images, idx in batches:
        n = len(idx)
        if n < bs:
            images = {m: torch.cat([x, x.new_zeros(bs - n, *x.shape[1:])])
                      for m, x in images.items()}
        batch = normalise({"images": images})
        batch["camids"] = torch.zeros(bs, dtype=torch.long, device=device)
        torch.compiler.cudagraph_mark_step_begin()
        with autocast(device, torch.bfloat16):
            feats = forward(batch)
        [v[:n].float() for v in feats.values() if torch.is_tensor(v)]


for w, threaded in ((4, False), (8, False), (4, True), (8, True)):
    report(v="gpu_decode_e2e", workers=w, threaded=threaded,
           tps=rate(lambda w=w, t=threaded: gpu_decode_e2e(w, t)))
os._exit(0)
