"""GPU benchmark: training and feature-extraction throughput, metric time, peak memory, MFU.

    python tools/benchmark.py --root /tmp/bench [--config A.yml ...] [--workers 14] [KEY VALUE ...]
    python tools/benchmark.py ... --pipeline ring --pipeline plain    # both data pipelines, in turn

For each config (default: the RGBNT201 DeMo and DeMo_SDTPS recipes at batch 64, random weights) on a
synthetic RGBNT201 set at full size (generated under --root when missing):
- train_e2e: steady-state training triplets/s through the real data pipeline and engine.Trainer's
  step (--iters timed iterations after --warmup, across epoch boundaries);
- train_model: the same step on batches already on the GPU (the model's ceiling);
- train_epochs: engine.Trainer.train() for --epochs epochs as train_net.py runs them (epoch-end
  hooks and a last.pth checkpoint per epoch included), timed from one epoch end to the next;
- extract_e2e: engine.evaluator.extract_features over >= --gallery triplets read from JPEG files,
  as at a run's later evaluations (the test loader's workers kept); extract_e2e_first: the first
  extraction of those triplets (workers started inside the clock);
- extract_loader(_first): the test loader alone over the same triplets (decoded, on the GPU,
  normalised), a second pass (and the first);
- extract_model: the eval forward on decoded tensors already on the GPU;
- peak GPU memory as nvidia-smi reports it (the anchor's measure) and torch's own peak;
- MFU = 6 x GMACs x triplets/s / the device's dense bf16 peak.
Once: metrics (utils.metrics.rank_features) for 10,000 x 100,000 features.
Each config runs once per --pipeline (DATALOADER.PIPELINE; default: the config's, overrides
included); the measures that go through a loader name the pipeline that ran.
One JSON line per measurement, then a table. Under torchrun, train_e2e runs on every rank with the
global batch split and rank 0 reports.
"""

import argparse
import faulthandler
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from config import load_config  # noqa: E402
from data import build_dataset, build_test_loader, build_train_loader  # noqa: E402
from data.synthetic import make_synthetic, read_params  # noqa: E402
from data.transforms import BatchTransform  # noqa: E402
from engine import HookBase, Trainer  # noqa: E402
from engine.defaults import setup  # noqa: E402
from engine.evaluator import Evaluator  # noqa: E402
from engine.precision import amp_dtype, autocast, compile_model, uses_cuda_graphs  # noqa: E402
from modeling import build_model  # noqa: E402
from utils import comm  # noqa: E402
from utils.metrics import rank_features  # noqa: E402

CONFIGS = ("configs/RGBNT201/DeMo.yml", "configs/RGBNT201/DeMo_SDTPS.yml")
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
RESULTS = []


def emit(**row):
    if comm.is_main_process():
        RESULTS.append(row)
        print(json.dumps(row), flush=True)


class SmiPeak:
    """Polls this GPU's used memory through NVML (what nvidia-smi, the anchor's measure, shows)."""

    def __init__(self, index):
        self.index, self.peak, self._stop = index, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
        except Exception:  # no NVML here (CPU run): report 0
            return
        while not self._stop.is_set():
            used = pynvml.nvmlDeviceGetMemoryInfo(handle).used // 2**20
            self.peak = max(self.peak, int(used))
            self._stop.wait(0.1)

    def __enter__(self):
        if self.index >= 0:
            self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._t.is_alive():
            self._t.join(timeout=5)


def peak_flops(device):
    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK.items() if k in name), None), name


def gmacs(cfg, model, device):
    """Multiply-adds of one eval forward per triplet (the papers' "GFLOPs")."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = cfg.INPUT.SIZE_TEST
    batch = {
        "images": {m: torch.randn(1, 3, h, w, device=device) for m in cfg.INPUT.MODALITIES},
        "camids": torch.zeros(1, dtype=torch.long, device=device),
    }
    model.eval()
    with FlopCounterMode(display=False) as fc:
        model(batch)
    model.train()
    return fc.get_total_flops() / 2e9


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, n, device):
    sync(device)
    t = time.perf_counter()
    fn(n)
    sync(device)
    return time.perf_counter() - t


def bench_train(cfg, name, trainer, device, args, g, peak):
    loader = trainer.loader
    per_rank = cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
    state = {"epoch": 0, "it": iter(())}

    def next_batch():
        b = next(state["it"], None)
        if b is None:
            state["epoch"] += 1
            loader.set_epoch(state["epoch"])
            trainer.epoch = state["epoch"]
            state["it"] = iter(loader)
            b = next(state["it"])
        return b

    def steps(n):
        for _ in range(n):
            trainer.run_step(next_batch())

    def load_only(n):
        for _ in range(n):
            next_batch()

    load_only(args.warmup)
    sec = timed(load_only, args.iters, device)
    emit(
        measure="loader",
        config=name,
        pipeline=cfg.DATALOADER.PIPELINE,
        workers=args.workers,
        triplets_per_s=round(args.iters * per_rank * comm.get_world_size() / sec, 1),
    )
    steps(args.warmup)
    print(f"[benchmark] {name}: warm-up done", flush=True)
    sec = timed(steps, args.iters, device)
    tps = args.iters * cfg.SOLVER.IMS_PER_BATCH / sec
    emit(
        measure="train_e2e",
        config=name,
        pipeline=cfg.DATALOADER.PIPELINE,
        triplets_per_s=round(tps, 1),
        iters=args.iters,
        epochs_crossed=state["epoch"],
        world_size=comm.get_world_size(),
        workers=args.workers,
        mfu=round(6 * g * 1e9 * tps / peak / comm.get_world_size(), 3) if peak else None,
    )
    fixed = trainer.run_step  # the model's ceiling: one batch, already on the GPU
    b = next_batch()
    batch = {
        "images": {m: t.to(device) for m, t in b["images"].items()},
        "pids": b["pids"].to(device),
        "camids": b["camids"].to(device),
    }

    def model_steps(n):
        for _ in range(n):
            fixed(batch)

    model_steps(10)
    sec = timed(model_steps, args.iters // 2, device)
    emit(
        measure="train_model",
        config=name,
        world_size=comm.get_world_size(),
        triplets_per_s=round(args.iters // 2 * per_rank * comm.get_world_size() / sec, 1),
    )
    loader.close()  # the pass and its workers end; train_epochs starts anew, as train_net.py
    if args.epochs:
        bench_epochs(trainer, name, device, args.epochs)
    if cfg.SOLVER.COMPILE:
        from torch._dynamo.utils import counters

        # graphs: compiled graphs so far (1 = no graph break); skips: graphs left without CUDA
        # graphs in reduce-overhead mode (TORCH_LOGS=perf_hints says why)
        emit(
            measure="compile",
            config=name,
            graphs=counters["stats"]["unique_graphs"],
            cudagraph_skips=counters["inductor"]["cudagraph_skips"],
        )
    if args.profile and comm.is_main_process():
        profile_steps(model_steps, args.profile, name)


def bench_epochs(trainer, name, device, epochs):
    """Whole epochs of trainer.train(), from the end of epoch 2 to the end of the last (epoch 1
    warms up, epoch 2's checkpoint allocates the host buffers), written to OUTPUT_DIR."""
    ends = []

    class EpochEnd(HookBase):
        def after_epoch(self):
            sync(device)
            ends.append(time.perf_counter())

    trainer.register_hooks([EpochEnd()])
    trainer.max_epochs = epochs
    trainer.train()
    per_epoch = trainer.iters_per_epoch * trainer.cfg.SOLVER.IMS_PER_BATCH
    seconds = (ends[-1] - ends[1]) / (epochs - 2)
    emit(
        measure="train_epochs",
        config=name,
        pipeline=trainer.cfg.DATALOADER.PIPELINE,
        epochs=epochs,
        iters_per_epoch=trainer.iters_per_epoch,
        seconds_per_epoch=round(seconds, 3),
        triplets_per_s=round(per_epoch / seconds, 1),
    )


def profile_steps(steps, n, name):
    """The GPU time of `n` training steps by operator, largest first (where the next gain is)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        steps(n)
        if cuda:
            torch.cuda.synchronize()
    print(f"[benchmark] {name}: profile of {n} model-only training steps", flush=True)
    print(
        prof.key_averages().table(
            sort_by=f"{'cuda' if cuda else 'cpu'}_time_total",
            row_limit=30,
            max_name_column_width=70,
        ),
        flush=True,
    )


def bench_extract(cfg, name, model, splits, device, args):
    records = list(splits.train) + list(splits.gallery)
    records = (records * (args.gallery // len(records) + 1))[: args.gallery]
    # Repeats of a record would be one sample to the evaluator's de-duplication; here every entry
    # is extracted, so the count is the number of triplets read and encoded.
    with Evaluator(cfg) as evaluator:  # its own loaders: no config's measure reuses another's
        evaluator.extract(model, records[:512])  # compiles; a loader of its own
        for measure in ("extract_e2e_first", "extract_e2e"):
            # first: a new test loader (workers forked, ring page-locked inside the clock); then
            # the same records again, as at the next evaluation of a run: loader and workers kept
            sync(device)
            t = time.perf_counter()
            evaluator.extract(model, records)
            sync(device)
            emit(
                measure=measure,
                config=name,
                pipeline=cfg.DATALOADER.PIPELINE,
                triplets=len(records),
                triplets_per_s=round(len(records) / (time.perf_counter() - t), 1),
            )
    # The test loader alone (decode, transfer, normalisation on the device), no model: the rate
    # the data side could feed extraction with, over a first pass (starting the workers) and a
    # second one; first_batch_s is a fixed cost of each that the model cannot overlap.
    loader = build_test_loader(cfg, records, device=device)
    for measure in ("extract_loader_first", "extract_loader"):
        t = time.perf_counter()
        batches = iter(loader)
        n = len(next(batches)["paths"])
        sync(device)
        first = time.perf_counter() - t
        n += sum(len(b["paths"]) for b in batches)
        sync(device)
        emit(
            measure=measure,
            config=name,
            pipeline=cfg.DATALOADER.PIPELINE,
            workers=args.workers,
            triplets_per_s=round(n / (time.perf_counter() - t), 1),
            first_batch_s=round(first, 3),
        )
    loader.close()
    h, w = cfg.INPUT.SIZE_TEST
    bs = cfg.TEST.IMS_PER_BATCH
    pixels = {
        "images": {
            m: torch.randint(0, 256, (bs, 3, h, w), dtype=torch.uint8, device=device)
            for m in cfg.INPUT.MODALITIES
        },
        "camids": torch.zeros(bs, dtype=torch.long, device=device),
    }
    normalise = BatchTransform(cfg, False)
    dtype = amp_dtype(cfg, device)
    forward = compile_model(cfg, model)
    model.eval()

    @torch.no_grad()
    def fwd(n):
        for _ in range(n):
            if uses_cuda_graphs(cfg):
                torch.compiler.cudagraph_mark_step_begin()
            with autocast(device, dtype):
                forward(normalise(pixels))

    fwd(5)
    n = 40
    emit(
        measure="extract_model",
        config=name,
        batch=bs,
        triplets_per_s=round(n * bs / timed(fwd, n, device), 1),
    )
    model.train()


def bench_attention(cfg, model, device, iters=20):
    """Forward + backward of one block's attention at the training shape, per SDPA backend."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    attn = model.backbone.blocks[0].attn
    b = cfg.SOLVER.IMS_PER_BATCH * len(cfg.INPUT.MODALITIES)
    n = model.backbone.num_patches + 1
    dtype = amp_dtype(cfg, device) or torch.float32
    shape = (b, attn.num_heads, n, attn.head_dim)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in "qkv")
    grad = torch.randn(shape, device=device, dtype=dtype)

    def run(fn):
        def steps(m):
            for _ in range(m):
                fn(q, k, v).backward(grad)

        steps(3)
        return 1e3 * timed(steps, iters, device) / iters

    def sdpa(q, k, v):
        return F.scaled_dot_product_attention(q, k, v)

    for name in ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"):
        try:
            with sdpa_kernel([getattr(SDPBackend, name)]):
                ms = round(run(sdpa), 3)
        except RuntimeError as e:
            ms = f"unavailable: {str(e).splitlines()[0][:80]}"
        emit(measure="attention", backend=name, shape=list(shape), ms_fwd_bwd=ms)

    def math(q, k, v):
        with sdpa_kernel([SDPBackend.MATH]):
            return F.scaled_dot_product_attention(q, k, v)

    emit(
        measure="attention",
        backend="MATH, torch.compile",
        shape=list(shape),
        ms_fwd_bwd=round(run(torch.compile(math)), 3),
    )


def bench_metrics(device, nq=10_000, ng=100_000, dim=3072):
    gen = torch.Generator(device=device).manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(nq, dim, device=device, generator=gen), dim=1)
    g = torch.nn.functional.normalize(torch.randn(ng, dim, device=device, generator=gen), dim=1)
    qp, gp = (
        torch.randint(0, 1000, (nq,), device=device),
        torch.randint(0, 1000, (ng,), device=device),
    )
    qc, gc = torch.randint(0, 8, (nq,), device=device), torch.randint(0, 8, (ng,), device=device)
    rank_features(q[:100], g[:1000], qp[:100], gp[:1000], qc[:100], gc[:1000])
    sync(device)
    t = time.perf_counter()
    cmc, m_ap, _ = rank_features(q, g, qp, gp, qc, gc, max_rank=50)
    sync(device)
    emit(
        measure="metrics",
        queries=nq,
        gallery=ng,
        dim=dim,
        seconds=round(time.perf_counter() - t, 2),
        mAP=round(float(m_ap), 4),
    )


def main(args):
    runs = [(config, pipeline) for config in args.configs for pipeline in args.pipelines or [None]]
    for i, (config, pipeline) in enumerate(runs):
        device = run(args, config, pipeline, first=i == 0)
    if comm.is_main_process() and "metrics" in args.measures:
        bench_metrics(device, *args.metrics_size)
    if comm.is_main_process():
        print("\n| measure | config | figure |\n| --- | --- | --- |")
        for r in RESULTS:
            fig = {k: v for k, v in r.items() if k not in ("measure", "config")}
            print(f"| {r['measure']} | {r.get('config', '')} | {fig} |")


def run(args, config, pipeline, first):
    """The measures of one config through one data pipeline (None: the config's); `first`: the
    first run, which also measures the attention backends. Returns the device."""
    name = os.path.splitext(os.path.basename(config))[0]
    out = os.path.join(args.out, name if pipeline is None else f"{name}-{pipeline}")
    opts = ["DATASETS.ROOT_DIR", args.root, "OUTPUT_DIR", out]
    opts += ["DATALOADER.NUM_WORKERS", args.workers, *args.opts]
    if pipeline is not None:
        opts += ["DATALOADER.PIPELINE", pipeline]
    cfg = load_config(config, opts)
    device = setup(cfg)
    if comm.is_main_process():
        print(
            f"[benchmark] {name}: DATALOADER.PIPELINE {cfg.DATALOADER.PIPELINE}, "
            f"{cfg.DATALOADER.NUM_WORKERS} workers",
            flush=True,
        )
    peak, dev_name = peak_flops(device)
    splits = build_dataset(cfg)
    model = build_model(cfg, splits.num_train_pids, splits.num_cameras).to(device)
    g = gmacs(cfg, model, device)
    if "attention" in args.measures and first:
        bench_attention(cfg, model, device)
    cuda = device.type == "cuda"
    if "train" in args.measures:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        with SmiPeak(device.index or 0 if cuda else -1) as smi:
            trainer = Trainer(cfg, model, build_train_loader(cfg, splits.train, device=device))
            bench_train(cfg, name, trainer, device, args, g, peak)
            train_smi = smi.peak
        emit(
            measure="memory_train",
            config=name,
            pipeline=cfg.DATALOADER.PIPELINE,
            nvidia_smi_MiB=train_smi,
            torch_peak_allocated_MiB=round(torch.cuda.max_memory_allocated(device) / 2**20)
            if cuda
            else None,
            torch_peak_reserved_MiB=round(torch.cuda.max_memory_reserved(device) / 2**20)
            if cuda
            else None,
            device=dev_name,
            gmacs_per_triplet=round(g, 2),
            amp=str(amp_dtype(cfg, device)),
            compile=cfg.SOLVER.COMPILE and cfg.SOLVER.COMPILE_MODE,
        )
    trainer = None
    if comm.get_world_size() == 1 and "extract" in args.measures:
        bench_extract(cfg, name, model, splits, device, args)
    del trainer, model
    if cuda:
        torch.cuda.empty_cache()
    return device


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", default="bench_data", help="synthetic RGBNT201 (generated if missing)")
    p.add_argument("--out", default="output/bench")
    p.add_argument(
        "--config",
        action="append",
        dest="configs",
        metavar="FILE",
        help=f"config to measure (repeatable; default: {' and '.join(CONFIGS)})",
    )
    p.add_argument("--workers", type=int, default=14)
    p.add_argument("--iters", type=int, default=200, help="timed training iterations")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument(
        "--epochs",
        type=int,
        default=5,
        help="train_epochs: whole epochs of Trainer.train(), >= 3 (0: skip)",
    )
    p.add_argument("--gallery", type=int, default=20_000, help="triplets for extract_e2e")
    p.add_argument(
        "--metrics-size",
        type=int,
        nargs=2,
        default=(10_000, 100_000),
        metavar=("Q", "G"),
        help="queries and gallery items for the metric timing",
    )
    p.add_argument("--hang-timeout", type=float, default=540, help="seconds before giving up")
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="print a GPU profile of N model-only training steps",
    )
    p.add_argument(
        "--measures",
        nargs="+",
        default=["train", "extract", "metrics"],
        choices=["train", "extract", "metrics", "attention"],
        help="what to measure (default: train extract metrics; attention: forward + backward of "
        "the backbone's attention per SDPA backend)",
    )
    p.add_argument("--train-only", action="store_true", help="the same as --measures train")
    p.add_argument(
        "--pipeline",
        action="append",
        dest="pipelines",
        choices=["ring", "plain"],
        help="DATALOADER.PIPELINE to measure each config with (repeatable: one run per "
        "pipeline, in the order given; default: the config's)",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every config")
    args = p.parse_args()
    args.configs = args.configs or list(CONFIGS)
    if args.train_only:
        args.measures = ["train"]
    if args.epochs and args.epochs < 3:
        p.error("--epochs: at least 3 (epochs 1-2 are not timed), or 0 to skip train_epochs")
    # A stuck run prints every thread's stack and exits instead of hanging until killed.
    faulthandler.dump_traceback_later(args.hang_timeout, exit=True)
    if not os.path.isdir(os.path.join(args.root, "RGBNT201")):
        if int(os.environ.get("WORLD_SIZE", 1)) > 1:
            sys.exit(
                f"{args.root}/RGBNT201 is missing: generate it before torchrun with "
                f"python tools/make_synthetic_dataset.py {args.root} --dataset RGBNT201"
            )
        make_synthetic(args.root, "RGBNT201", scale=1.0)
    if os.environ.get("RANK", "0") == "0":  # what is measured (synthetic: None for other sets)
        emit(measure="data", root=args.root, synthetic=read_params(args.root, "RGBNT201"))
    main(args)
