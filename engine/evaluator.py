"""The one evaluation path: epoch-end evaluation, test_net.py, --eval-only and the demo.

One inference pass over the union of query and gallery (for RGBNT201 the query set *is* the
gallery: extracted once), sharded over ranks by the test loader and gathered by `index` on rank 0,
which ranks every return_pattern and broadcasts the results.
"""

import logging
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from config import PATTERN_NAMES
from data import build_test_loader
from data.datasets import unmatched_queries
from data.samplers import shard_range
from modeling import load_weights, select_pattern
from utils import comm
from utils.events import EventWriter
from utils.metrics import evaluate_rank, rank_features
from utils.reranking import re_ranking
from utils.safe_load import load_file

from .defaults import provenance
from .precision import amp_dtype, autocast, compile_model, uses_cuda_graphs
from .token_maps import write_token_maps

logger = logging.getLogger(__name__)


def union_records(query, gallery):
    """(records, q_idx, g_idx): each distinct sample once; query[i] is records[q_idx[i]]."""
    records, pos = [], {}
    idx = []
    for r in list(query) + list(gallery):
        j = pos.get(r.key)
        if j is None or records[j] != r:
            j = pos[r.key] = len(records)
            records.append(r)
        idx.append(j)
    return records, torch.tensor(idx[: len(query)]), torch.tensor(idx[len(query) :])


def missing_modalities(cfg):
    """TEST.MISSING_MODALITIES as a list in INPUT.MODALITIES order."""
    return [m for m in cfg.INPUT.MODALITIES if m in cfg.TEST.MISSING_MODALITIES]


def modality_sets(cfg):
    """(query modalities, gallery modalities) present at test time, in INPUT.MODALITIES order:
    TEST.QUERY_MODALITIES / TEST.GALLERY_MODALITIES (() = all), or all but
    TEST.MISSING_MODALITIES on both sides."""
    miss = set(missing_modalities(cfg))
    mods = cfg.INPUT.MODALITIES

    def side(names):
        return tuple(m for m in mods if (m in names if names else m not in miss))

    return side(cfg.TEST.QUERY_MODALITIES), side(cfg.TEST.GALLERY_MODALITIES)


def setting_name(cfg, query, gallery):
    """The name of an evaluation setting in logs, records and TensorBoard tags: "" with every
    modality on both sides, else e.g. "query_NI+TI_gallery_NI+TI"."""
    if tuple(query) == tuple(gallery) == tuple(cfg.INPUT.MODALITIES):
        return ""
    return f"query_{'+'.join(query)}_gallery_{'+'.join(gallery)}"


class Evaluator:
    """The evaluation of one config: extracts features and ranks them, owning its test loaders.

    A loader is kept with its persistent workers for the next extraction of the same records
    (evaluating every EVAL_PERIOD epochs, or under each missing-modality setting, starts the
    workers once: forking a large training process costs up to a second each time); two are kept
    (a run's test and validation sets), the least recently used one beyond that is closed.
    `close()` (or leaving a `with` block) ends them all.

        with Evaluator(cfg, splits) as evaluator:
            results = evaluator.evaluate(model, split="test")

    The trainer takes `evaluator.evaluate` as its callable.
    """

    def __init__(self, cfg, splits=None):
        self.cfg, self.splits = cfg, splits
        self._loaders = {}  # least recently used first

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """End the kept test loaders (their workers exit, their rings are unlocked)."""
        while self._loaders:
            self._loaders.popitem()[1].close()

    def _loader(self, records, device):
        # A record's key is the path its files are found from (data/datasets), so the keys name
        # what the loader reads (a few ms for 20,000 records, where repr(records) takes 0.1 s).
        key = (tuple(r.key for r in records), str(device))
        loader = self._loaders.pop(key, None)
        if loader is None:
            while len(self._loaders) >= 2:
                self._loaders.pop(next(iter(self._loaders))).close()
            loader = build_test_loader(self.cfg, records, device=device)
        self._loaders[key] = loader
        return loader

    def extract(self, model, records, present=None):
        """Raw eval outputs for `records`, in their order, on rank 0 ({"ori": (N, 3C), "fused":
        ...}); None on the other ranks. Every rank runs its shard of the test loader.

        present: the modalities the samples come with (default: all but
            TEST.MISSING_MODALITIES); the others are zeroed after normalisation, so they carry no
            signal at all.

        The global torch RNG is left as it was found (a loader's pass draws its seed from it): the
        training after an evaluation, and a run resumed from the checkpoint written just before
        that evaluation, continue with the same random numbers."""
        state = torch.get_rng_state()
        try:
            return self._extract(model, records, present)
        finally:
            torch.set_rng_state(state)

    @torch.no_grad()
    def _extract(self, model, records, present):
        cfg = self.cfg
        device = next(model.parameters()).device
        dtype = amp_dtype(cfg, device)
        miss = (
            missing_modalities(cfg)
            if present is None
            else [m for m in cfg.INPUT.MODALITIES if m not in present]
        )
        was_training = model.training
        model.eval()
        loader = self._loader(records, device)
        if comm.is_main_process() and sys.stdout.isatty():
            loader = tqdm(loader, desc="features", dynamic_ncols=True, leave=False)
        forward, full = compile_model(cfg, model), None
        size = len(shard_range(len(records)))  # this rank's items (fewer if SKIP_BAD skips)
        indices, host, done = [], None, 0
        for batch in loader:
            indices.append(batch["index"])
            for mod in miss:
                batch["images"][mod] = torch.zeros_like(batch["images"][mod])
            n = len(batch["paths"])
            full = full or n
            if forward is not model and n < full:  # the compiled graph's shape: no recompilation
                batch = _pad(batch, full)
            if uses_cuda_graphs(cfg):
                torch.compiler.cudagraph_mark_step_begin()
            with autocast(device, dtype):
                feats = forward(batch)
            feats = {k: v for k, v in feats.items() if torch.is_tensor(v)}
            if host is None:  # page-locked on a GPU: the copies below run while the model goes on
                host = {
                    k: torch.empty(
                        (size, *v.shape[1:]), dtype=torch.float32, pin_memory=device.type == "cuda"
                    )
                    for k, v in feats.items()
                }
            # Each batch's features go to the host as they are made (queued before the next
            # replay of a CUDA graph overwrites them), not all at the end.
            for k, v in feats.items():
                host[k][done : done + n].copy_(v[:n], non_blocking=True)
            done += n
        model.train(was_training)
        if device.type == "cuda":  # the feature copies above have landed
            torch.cuda.current_stream(device).synchronize()
        index = torch.cat(indices).cpu() if indices else torch.empty(0, dtype=torch.long)
        local = (index, {k: v[:done] for k, v in host.items()} if host else {})
        shards = comm.gather_object(local)
        if shards is None:
            return None
        # The shards are contiguous and gathered in rank order, and each is read in order.
        index = torch.cat([idx for idx, _ in shards])
        if not torch.equal(index, torch.arange(len(records))):
            raise RuntimeError(
                f"the test loader returned {index.numel()} items for {len(records)} "
                "records, not each once in order (duplicates, gaps or reordering)"
            )
        parts = [f for _, f in shards if f]
        return {
            k: torch.cat([f[k] for f in parts]) if len(parts) > 1 else parts[0][k] for k in parts[0]
        }

    def evaluate(self, model, split="test", writer=None, step=None, epoch=None):
        """Metrics of `model` on the splits for every available return_pattern (TEST.ALL_PATTERNS)
        or TEST.RETURN_PATTERN only.

        split: "test" (query / gallery) or "val" (val_query / val_gallery). Collective under DDP;
        every rank returns {pattern: {"mAP", "mINP", "R1", "R5", "R10"}} in percent. Rank 0 logs a
        table and, given a `writer` (utils.events.EventWriter), records the results there: a JSON
        line with `epoch` and `step`, and TensorBoard scalars at `step` (the global iteration of
        training).
        """
        cfg, splits = self.cfg, self.splits
        if split == "val":
            query, gallery = splits.val_query, splits.val_gallery
            if not query:
                raise ValueError("split='val' needs DATASETS.VAL_FRACTION > 0")
        elif split == "test":
            query, gallery = splits.query, splits.gallery
        else:
            raise ValueError(f"split must be 'test' or 'val', got {split!r}")
        available = tuple(getattr(model, "patterns", (1,)))
        patterns = available if cfg.TEST.ALL_PATTERNS else (cfg.TEST.RETURN_PATTERN,)
        missing = [p for p in patterns if p not in available]
        if missing:
            raise ValueError(
                f"TEST.RETURN_PATTERN {missing[0]} is not available; the model has {available}"
            )
        device = next(model.parameters()).device
        q_mods, g_mods = modality_sets(cfg)
        records, q_idx, g_idx = union_records(query, gallery)
        start = time.perf_counter()
        if q_mods == g_mods:  # one pass over the distinct samples
            q_feats = g_feats = self.extract(model, records, q_mods)
        else:  # each side with its own modalities
            q_feats = self.extract(model, query, q_mods)
            g_feats = self.extract(model, gallery, g_mods)
            q_idx, g_idx = torch.arange(len(query)), torch.arange(len(gallery))
        results = None
        if q_feats is not None:
            t_feat = time.perf_counter() - start
            results = {}
            for p in patterns:
                fq, fg = select_pattern(q_feats, p), select_pattern(g_feats, p)
                results[p] = rank_metrics(
                    cfg, fq[q_idx], fg[g_idx], query, gallery, splits.protocol, device
                )
            t_rank = time.perf_counter() - start - t_feat
            lost = unmatched_queries(query, gallery, splits.protocol)  # the metrics skip them
            if lost:
                logger.warning(
                    "%d of %d %s %s queries have no valid gallery match (same-id items all "
                    "removed by the %s protocol, or the id absent from the gallery) and are left "
                    "out of every metric: %s",
                    len(lost),
                    len(query),
                    splits.name,
                    split,
                    splits.protocol,
                    ", ".join(query[i].key for i in lost[:5]) + (", ..." if len(lost) > 5 else ""),
                )
            logger.info(
                "%s %s: %d of %d queries ranked, %d gallery (%d distinct samples), %s "
                "protocol, query %s, gallery %s, re-ranking %s; features %.1f s, ranking "
                "%.1f s\n%s",
                splits.name,
                split,
                len(query) - len(lost),
                len(query),
                len(gallery),
                len(records),
                splits.protocol,
                "+".join(q_mods),
                "+".join(g_mods),
                cfg.TEST.RE_RANKING,
                t_feat,
                t_rank,
                _table(results),
            )
            if writer is not None:
                _write(cfg, results, split, writer, step, epoch, len(query) - len(lost))
            if (
                cfg.TEST.VIS_TOKENS
                and getattr(getattr(model, "module", model), "sdtps", None) is not None
            ):
                write_token_maps(cfg, model, query, writer, step)
        return comm.broadcast_object(results)

    __call__ = evaluate


def extract_features(cfg, model, records, present=None):
    """Evaluator(cfg).extract(model, records, present) with a loader of its own, closed after."""
    with Evaluator(cfg) as evaluator:
        return evaluator.extract(model, records, present)


def evaluate(cfg, model, splits, split="test", writer=None, step=None, epoch=None):
    """Evaluator(cfg, splits).evaluate(...) with loaders of its own, closed after."""
    with Evaluator(cfg, splits) as evaluator:
        return evaluator.evaluate(model, split, writer, step, epoch)


def _pad(batch, size):
    """The model's inputs of `batch` padded with zeros to `size` samples."""

    def pad(x):
        return torch.cat([x, x.new_zeros(size - len(x), *x.shape[1:])])

    return {
        "images": {m: pad(x) for m, x in batch["images"].items()},
        "camids": pad(batch["camids"]),
    }


def rank_metrics(cfg, q, g, qr, gr, protocol, device):
    """Percent metrics for features q (Q, D), g (G, D) of query records qr / gallery records gr."""

    def ids(records, field):
        return torch.tensor([getattr(r, field) for r in records])

    scenes = {}
    if protocol == "scene":
        scenes = dict(q_scenes=ids(qr, "sceneid"), g_scenes=ids(gr, "sceneid"))
    args = (ids(qr, "pid"), ids(gr, "pid"), ids(qr, "camid"), ids(gr, "camid"))
    q, g = q.to(device), g.to(device)
    if cfg.TEST.FEAT_NORM:  # pattern 3 as a whole: [ori; fused] is one vector
        q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
    t = cfg.TEST
    max_rank = max(10, t.MAX_RANK)
    if t.RE_RANKING:
        dist = re_ranking(q, g, t.RE_RANKING_K1, t.RE_RANKING_K2, t.RE_RANKING_LAMBDA)
        cmc, m_ap, m_inp = evaluate_rank(dist, *args, max_rank=max_rank, **scenes)
    else:
        cmc, m_ap, m_inp = rank_features(q, g, *args, max_rank=max_rank, **scenes)
    return {
        "mAP": 100 * m_ap,
        "mINP": 100 * m_inp,
        "R1": 100 * cmc[0],
        "R5": 100 * cmc[4],
        "R10": 100 * cmc[9],
    }


def _table(results):
    head = f"| {'pattern':<13} | {'mAP':>6} | {'mINP':>6} | {'R1':>6} | {'R5':>6} | {'R10':>6} |"
    rows = [head, "|" + "|".join("-" * (len(c) + 0) for c in head.split("|")[1:-1]) + "|"]
    for p, m in results.items():
        name = f"{p} ({PATTERN_NAMES.get(p, '?')})"
        rows.append(
            f"| {name:<13} | "
            + " | ".join(f"{m[k]:6.2f}" for k in ("mAP", "mINP", "R1", "R5", "R10"))
            + " |"
        )
    return "\n".join(rows)


def _write(cfg, results, split, writer, step, epoch, ranked):
    query, gallery = modality_sets(cfg)
    setting = setting_name(cfg, query, gallery)
    prefix = f"{split}/{setting}/" if setting else f"{split}/"
    scalars = {f"{prefix}pattern{p}/{k}": v for p, m in results.items() for k, v in m.items()}
    writer.write(
        {
            "type": "eval",
            "split": split,
            "epoch": epoch,
            "step": step,
            "setting": setting or "full",
            "query_modalities": list(query),
            "gallery_modalities": list(gallery),
            "re_ranking": cfg.TEST.RE_RANKING,
            "queries_ranked": ranked,
            "results": {str(p): m for p, m in results.items()},
        },
        scalars,
        step or 0,
    )


def evaluate_weights(cfg, model, splits, split="test"):
    """test_net.py and train_net.py --eval-only: load TEST.WEIGHT into `model` (when set),
    evaluate, and record the results in OUTPUT_DIR/test_metrics.json and test_events/, beside a
    training run's files and never in them. TensorBoard's x axis is the checkpoint's global
    iteration where it records one (checkpoints of train_net.py), as in training."""
    step = epoch = None
    if cfg.TEST.WEIGHT:
        ckpt = load_file(cfg.TEST.WEIGHT, "checkpoint")  # read once: weights and position
        load_weights(model, ckpt, cfg, name=cfg.TEST.WEIGHT)
        logger.info("loaded %s", cfg.TEST.WEIGHT)
        if isinstance(ckpt, dict):  # ours records where training was; bare state dicts do not
            step, epoch = ckpt.get("iteration"), ckpt.get("epoch")
    else:
        logger.warning("no TEST.WEIGHT: evaluating the untrained model")
    device = next(model.parameters()).device
    prov = provenance(cfg, device)
    writer = EventWriter(
        cfg.OUTPUT_DIR,
        {k: prov[k] for k in ("git_commit", "device", "seed", "world_size")},
        metrics_name="test_metrics.json",
        tb_subdir="test_events",
    )
    try:
        with Evaluator(cfg, splits) as evaluator:
            return evaluator.evaluate(model, split=split, writer=writer, step=step, epoch=epoch)
    finally:
        writer.close()
