"""Evaluation with missing modalities: DeMo's six TEST.MISS settings (the same modalities missing
from query and gallery) and the any-to-any matrix (the query with one set, the gallery with
another), with every return_pattern ranked.

Features are extracted once per (split, modality set): the 7 x 7 matrix of non-empty sets of three
modalities costs 7 passes over the test samples and 49 rankings per pattern.
"""

import itertools
import logging
import time

from config.validate import MISS_CHOICES
from modeling import select_pattern

from .evaluator import Evaluator, rank_metrics, setting_name, union_records

logger = logging.getLogger(__name__)


def modality_subsets(modalities):
    """Every non-empty subset of `modalities`, the full set first, then by size, each in the
    modalities' order: (R, N, T), (R, N), (R, T), (N, T), (R,), (N,), (T,)."""
    mods = tuple(modalities)
    return [c for k in range(len(mods), 0, -1) for c in itertools.combinations(mods, k)]


def miss_letters(cfg, present):
    """The TEST.MISS letters of the modalities absent from `present` ("none" when none is)."""
    letters = "".join("rnt"[i] for i, m in enumerate(cfg.INPUT.MODALITIES) if m not in present)
    return letters or "none"


def any_to_any(cfg, model, splits, sets=None, pairs=None):
    """{(query set, gallery set): {pattern: metrics}} on the test split, and the timing.

    sets: the modality sets to extract (default every non-empty subset); pairs: the (query set,
    gallery set) pairs to rank (default every pair of `sets`). Returns (None, timing) on ranks
    other than 0 under torchrun.
    """
    sets = [tuple(s) for s in (sets or modality_subsets(cfg.INPUT.MODALITIES))]
    pairs = pairs or [(q, g) for q in sets for g in sets]
    device = next(model.parameters()).device
    records, q_idx, g_idx = union_records(splits.query, splits.gallery)
    start = time.perf_counter()
    with Evaluator(cfg) as evaluator:  # one loader and its workers for every pass
        feats = {s: evaluator.extract(model, records, s) for s in sets}
    t_extract = time.perf_counter() - start
    if any(f is None for f in feats.values()):
        return None, {"extract_s": t_extract}
    results = {}
    for q, g in pairs:
        results[(q, g)] = {
            p: rank_metrics(
                cfg,
                select_pattern(feats[q], p)[q_idx],
                select_pattern(feats[g], p)[g_idx],
                splits.query,
                splits.gallery,
                splits.protocol,
                device,
            )
            for p in model.patterns
        }
        logger.info(
            "%s: %s",
            setting_name(cfg, q, g) or "all modalities",
            ", ".join(f"pattern {p} mAP {m['mAP']:.2f}" for p, m in results[(q, g)].items()),
        )
    timing = {
        "extract_s": t_extract,
        "rank_s": time.perf_counter() - start - t_extract,
        "extractions": len(sets),
        "settings": len(pairs),
        "samples": len(records),
    }
    logger.info(
        "%d settings from %d extractions of %d samples: extraction %.1f s, ranking %.1f s",
        len(pairs),
        len(sets),
        len(records),
        timing["extract_s"],
        timing["rank_s"],
    )
    return results, timing


def missing_suite(cfg, model, splits):
    """{TEST.MISS letters: {pattern: metrics}} for the full set and DeMo's six missing settings
    (the diagonal of the any-to-any matrix), and the timing."""
    mods = cfg.INPUT.MODALITIES
    sets = [
        tuple(m for i, m in enumerate(mods) if letters == "none" or "rnt"[i] not in letters)
        for letters in MISS_CHOICES
    ]
    results, timing = any_to_any(cfg, model, splits, sets, [(s, s) for s in sets])
    if results is None:
        return None, timing
    return {miss_letters(cfg, q): row for (q, _), row in results.items()}, timing
