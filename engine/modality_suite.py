"""Evaluation with missing modalities: DeMo's six missing-modality settings
(TEST.MISSING_MODALITIES: the same modalities missing from query and gallery) and the any-to-any
matrix (the query with one set, the gallery with another), with every return_pattern ranked.

Features are extracted once per (split, modality set): the 7 x 7 matrix of non-empty sets of three
modalities costs 7 passes over the test samples and 49 rankings per pattern.
"""

import itertools
import logging
import time

from modeling import select_pattern

from .evaluator import Evaluator, rank_metrics, setting_name, union_records

logger = logging.getLogger(__name__)


def modality_subsets(modalities):
    """Every non-empty subset of `modalities`, the full set first, then by size, each in the
    modalities' order: (R, N, T), (R, N), (R, T), (N, T), (R,), (N,), (T,)."""
    mods = tuple(modalities)
    return [c for k in range(len(mods), 0, -1) for c in itertools.combinations(mods, k)]


def missing_label(cfg, present):
    """The name of a missing-modality setting: the modalities absent from `present` joined by "+"
    in INPUT.MODALITIES order (e.g. "RGB+NI"), "none" when none is."""
    return "+".join(m for m in cfg.INPUT.MODALITIES if m not in present) or "none"


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
    """{missing_label: {pattern: metrics}} for the full set and every TEST.MISSING_MODALITIES
    that leaves a modality (DeMo's six settings for three: the diagonal of the any-to-any matrix),
    and the timing. Rows: "none", then one missing modality, then two, in INPUT.MODALITIES order
    (none, RGB, NI, TI, RGB+NI, RGB+TI, NI+TI)."""
    mods = tuple(cfg.INPUT.MODALITIES)
    missing = [c for k in range(len(mods)) for c in itertools.combinations(mods, k)]
    sets = [tuple(m for m in mods if m not in gone) for gone in missing]
    results, timing = any_to_any(cfg, model, splits, sets, [(s, s) for s in sets])
    if results is None:
        return None, timing
    return {missing_label(cfg, q): row for (q, _), row in results.items()}, timing
