"""Reading a run's `metrics.json` (utils/events.py: one JSON object a line) back: the final test
results, and per-epoch learning curves.

A resumed run appends to the same file and redoes its unfinished epoch, so the file can hold an
epoch's records twice; the later ones win (training records restart where `step` goes back,
evaluations are keyed by split, epoch and modality setting).
"""

import json
import logging
import os

import yaml

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def read_records(run_dir, name=METRICS_FILE):
    """The records of run_dir/<name> (metrics.json; test_net.py's test_metrics.json) in file
    order ([] when there is none). A line that does not parse (a run killed while writing it) is
    skipped."""
    path = os.path.join(run_dir, name)
    if not os.path.isfile(path):
        return []
    records = []
    with open(path) as f:
        for n, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning(
                    "%s line %d is not JSON (a run killed while writing it?): skipped", path, n
                )
    return records


def setting(record):
    """The modality setting of an eval record: "full" (every modality on both sides) or the
    evaluator's setting name, e.g. "query_NI+TI_gallery_NI+TI". Records written before settings
    were named carry only the missing modalities' letters, "miss"."""
    if "setting" in record:
        return record["setting"]
    miss = record.get("miss", "none")
    return "full" if miss == "none" else f"miss {miss}"


def latest(records):
    """The records with what a resumed run redid removed: training records from before a restart
    of `step`, and all but the last evaluation of each (split, epoch, setting)."""
    train, evals = [], {}
    for r in records:
        if r.get("type") == "train":
            while train and train[-1]["step"] >= r["step"]:
                train.pop()
            train.append(r)
        elif r.get("type") == "eval":
            key = (r.get("split"), r.get("epoch"), setting(r))
            evals.pop(key, None)  # re-inserted last: file order of the survivors
            evals[key] = r
    return train + list(evals.values())


def final_test(records, max_epochs):
    """{pattern (int): {"mAP", "mINP", "R1", "R5", "R10"}} of the test evaluation after the last
    epoch (what the trainer records when a run finishes), or None."""
    found = None
    for r in records:
        if r.get("type") == "eval" and r.get("split") == "test" and r.get("epoch") == max_epochs:
            found = r
    return _patterns(found)


def last_test(records):
    """The last test evaluation of the file (e.g. test_net.py's), as final_test, or None."""
    found = None
    for r in records:
        if r.get("type") == "eval" and r.get("split") == "test":
            found = r
    return _patterns(found)


def _patterns(record):
    if record is None:
        return None
    return {int(p): dict(m) for p, m in record["results"].items()}


def loss_curves(records):
    """{loss key: {epoch: mean over the epoch}} of the training records (keys `loss_*`), each
    window weighted by the iterations it covers."""
    sums = {}
    prev_epoch, prev_iter = None, 0
    for r in latest(records):
        if r.get("type") != "train":
            continue
        epoch, it = r["epoch"], r["iter"]
        weight = it - (prev_iter if epoch == prev_epoch else 0)
        prev_epoch, prev_iter = epoch, it
        for k, v in r.items():
            if k.startswith("loss_") and isinstance(v, (int, float)):
                s = sums.setdefault(k, {}).setdefault(epoch, [0.0, 0])
                s[0] += v * weight
                s[1] += weight
    return {
        k: {e: s / w for e, (s, w) in sorted(by_epoch.items()) if w}
        for k, by_epoch in sorted(sums.items())
    }


def eval_curves(records, metric="mAP"):
    """{split: {pattern (int): {epoch: value}}} of the epoch-end evaluations (full modalities;
    evaluations outside training, without an epoch, are left out)."""
    out = {}
    for r in latest(records):
        if r.get("type") != "eval" or r.get("epoch") is None or setting(r) != "full":
            continue
        for p, m in r["results"].items():
            out.setdefault(r["split"], {}).setdefault(int(p), {})[r["epoch"]] = m[metric]
    return {
        s: {p: dict(sorted(c.items())) for p, c in sorted(by_p.items())}
        for s, by_p in sorted(out.items())
    }


def run_final(run_dir):
    """The final test results of a finished run folder (model_final.pth present), read with the
    run's own SOLVER.MAX_EPOCHS from its config.yaml; None for an unfinished run."""
    config = os.path.join(run_dir, "config.yaml")
    if not (os.path.isfile(os.path.join(run_dir, "model_final.pth")) and os.path.isfile(config)):
        return None
    with open(config) as f:
        max_epochs = (yaml.safe_load(f) or {}).get("SOLVER", {}).get("MAX_EPOCHS")
    return final_test(read_records(run_dir), max_epochs) if max_epochs else None
