"""Multi-seed studies: every config trained with every seed, as `train_net.py` trains it (in
subprocesses of it: a config's new runs share processes, `process_groups`), resumable, several
runs at once; the statistics are in engine/compare_report.py.

Layout of a study folder OUT:

    OUT/<DATASETS.NAMES>-<config name>/seed_<s>/   one train_net.py run (OUTPUT_DIR), + console.txt
    OUT/<...>/seed_<s>/best_test/                  test_net.py on model_best.pth (validation split)
    OUT/inductor_cache/                            torch.compile's cache, shared by every run
    OUT/compile_gates/<DATASETS.NAMES>-<config name>  exists once that config's first run of
                                                   this invocation has compiled (`execute`)

A run's state on disk decides what a (re)run of the study does with it:
    done    model_final.pth and the final test results in metrics.json: reused;
    resume  the folder holds a checkpoint that loads completely (the one `train_net.py --resume`
            continues from: engine/run_dir.py): resumed, which also finishes a final evaluation
            that a kill cut short;
    fresh   anything else (no folder, a run killed before its first checkpoint, only damaged
            checkpoints): the folder is cleared and the run starts from scratch (the study owns
            these folders).
A done or resumable run must have been trained with the config the study asks for now
(config.yaml), else planning stops before anything runs. Once a run is done, what only served to
resume it (last.pth, the checkpoint of the epoch before the last: 1.2 GB for ViT-B with Adam, and
the last_checkpoint file) is removed unless the study keeps it (`keep_last`): a study of forty
ViT-B runs would otherwise hold 48 GB of them. One study process at a time holds
OUT/compare.lock; a run folder whose train.lock is held by a live run stops the planning too.
"""

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import time

import torch

from config import ConfigError, load_config
from utils.checkpoint import FINAL, LAST, RESUME, load_checkpoint
from utils.run_records import METRICS_FILE, final_test, last_test, read_records

from .run_dir import LOCK as TRAIN_LOCK
from .run_dir import RunDirError, RunLock, find_resumable

logger = logging.getLogger(__name__)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(REPO, "train_net.py")
TEST_SCRIPT = os.path.join(REPO, "test_net.py")
CACHE_DIR = "inductor_cache"
GATE_DIR = "compile_gates"
OWNER_FILE = "owner.pid"  # in GATE_DIR: the study process that opens the gates
BEST_DIR = "best_test"
CONSOLE = "console.txt"
STUDY_LOCK = "compare.lock"
TEST_METRICS = "test_metrics.json"  # where test_net.py records its evaluation
# Runs per GPU when --parallel is not given: small models leave a GPU mostly idle, so a few runs
# share one. A first guess, to be replaced by a measured value.
GPU_RUNS_PER_DEVICE = 3
POLL_S = 0.5
# Keys in which a reused or resumed run may differ from what the study asks for now: how fast
# and how often things happen, none of which changes a result (batches do not depend on the
# number of loader workers: docs/ARCHITECTURE.md). Every other key, TEST.* included (a finished
# run's final results were evaluated with its TEST settings), must match.
RESULT_NEUTRAL = {
    "DATALOADER.NUM_WORKERS",
    "DATALOADER.PREFETCH_FACTOR",
    "DATALOADER.PIPELINE",
    "SOLVER.LOG_PERIOD",
    "SOLVER.CHECKPOINT_PERIOD",
    "SOLVER.KEEP_CHECKPOINTS",
    "SOLVER.COMPILE",
    "SOLVER.COMPILE_MODE",
    "SOLVER.DDP_BUCKET_MB",
    "MODEL.SDPA_BACKEND",
    "TEST.IMS_PER_BATCH",
}


class StudyError(ValueError):
    """A study that cannot be planned or run; the message names the file, key or value."""


@dataclasses.dataclass
class Entry:
    """One config of the study."""

    file: str  # absolute path of the YAML file
    name: str  # unique among the study's configs of one dataset
    dataset: str
    folder: str  # OUT/<dataset>-<name>
    cfg: object  # the config with the study's overrides (seed and OUTPUT_DIR of its first run)
    label: str = ""  # name in tables: the config name, with the dataset when the study has several

    @property
    def has_val(self):
        return self.cfg.DATASETS.VAL_FRACTION > 0


@dataclasses.dataclass
class Run:
    """One (config, seed) of the study and what this invocation does with it."""

    entry: Entry
    seed: int
    folder: str
    cfg: object
    state: str = "fresh"  # done / resume / fresh, as found on disk
    why: str = ""  # why a folder that exists is restarted
    needs_best: bool = False  # model_best.pth still to be evaluated on test
    action: str = ""  # what this invocation did: reused, resumed, trained, evaluated, failed
    error: str = ""
    final: dict = None  # {pattern: metrics} of model_final.pth on test
    best: dict = None  # the same of model_best.pth (validation split only)
    best_epoch: int = None


@dataclasses.dataclass
class Study:
    out: str
    seeds: list
    opts: list  # the study's KEY VALUE overrides, OUTPUT_DIR removed
    entries: list
    runs: list
    lock: object = None  # the open OUT/compare.lock, held while the study runs
    keep_last: bool = False  # keep the resume checkpoint of finished runs


def split_overrides(opts):
    """(overrides without OUTPUT_DIR, the OUTPUT_DIR value or None). SOLVER.SEED is refused: the
    study sets it per run."""
    if len(opts) % 2:
        raise StudyError(f"overrides come in KEY VALUE pairs; got an odd list: {' '.join(opts)}")
    rest, out = [], None
    for key, value in zip(opts[0::2], opts[1::2]):
        if key == "SOLVER.SEED":
            raise StudyError("SOLVER.SEED is set per run by --seeds; remove it from the overrides")
        if key == "OUTPUT_DIR":
            out = value
        else:
            rest += [key, value]
    return rest, out


def config_names(files, datasets):
    """Short names for config files, unique among the configs of one dataset: the file name
    without extension, or, for files of the same name and dataset, as many parent folders as
    make them distinct (exps/a/DeMo.yml, exps/b/DeMo.yml -> a_DeMo, b_DeMo)."""
    parts = [os.path.splitext(os.path.abspath(f))[0].split(os.sep) for f in files]
    names = [p[-1] for p in parts]
    for depth in range(2, max(map(len, parts)) + 1):
        keys = list(zip(datasets, names))
        clash = {k for k in keys if keys.count(k) > 1}
        if not clash:
            break
        names = ["_".join(p[-depth:]) if k in clash else n for k, n, p in zip(keys, names, parts)]
    return names


def _load(file, opts):
    try:
        return load_config(file, opts)
    except ConfigError as e:
        raise StudyError(str(e)) from e


def plan(config_files, seeds, opts, out):
    """The study's entries and runs, each run's state read from disk. Raises StudyError for
    inputs that cannot make a study, and for a folder that holds a run of another config or
    a run that is still going."""
    if not config_files:
        raise StudyError("give the configs to compare: --config A.yml --config B.yml")
    if not seeds:
        raise StudyError("give the seeds: --seeds 1 2 3")
    for s in seeds:
        if s < 0:
            raise StudyError(f"--seeds: {s} is negative; seeds are integers >= 0")
        if seeds.count(s) > 1:
            raise StudyError(f"--seeds: seed {s} is given twice")
    files = [os.path.abspath(f) for f in config_files]
    for f, given in zip(files, config_files):
        if files.count(f) > 1:
            raise StudyError(f"--config {given} is given twice")
        if not os.path.isfile(f):
            raise StudyError(f"config file not found: {given}")
    out = os.path.abspath(out)
    lock = lock_study(out)
    try:
        entries, runs = _entries_and_runs(files, seeds, opts, out)
    except BaseException:
        lock.release()
        raise
    return Study(out, list(seeds), list(opts), entries, runs, lock)


def _entries_and_runs(files, seeds, opts, out):
    bases = [_load(f, [*opts, "SOLVER.SEED", str(seeds[0])]) for f in files]
    datasets = [b.DATASETS.NAMES for b in bases]
    entries = []
    for f, base, dataset, name in zip(files, bases, datasets, config_names(files, datasets)):
        folder = os.path.join(out, f"{dataset}-{name}")
        entries.append(Entry(f, name, dataset, folder, base, name))
    if len({e.dataset for e in entries}) > 1:
        for e in entries:
            e.label = f"{e.dataset}-{e.name}"
    runs = []
    for s in seeds:  # seed-major: the first run of every config starts first
        for e in entries:
            folder = os.path.join(e.folder, f"seed_{s}")
            cfg = _load(e.file, [*opts, "SOLVER.SEED", str(s), "OUTPUT_DIR", folder])
            run = Run(e, s, folder, cfg)
            _check_not_running(folder)
            run.state, run.why = run_state(folder, cfg.SOLVER.MAX_EPOCHS)
            if run.state != "fresh":
                _check_same_config(run)
            run.needs_best = e.has_val and not best_done(folder)
            runs.append(run)
    return entries, runs


def run_state(folder, max_epochs):
    """("done" | "resume" | "fresh", why a folder with a run in it is started again, or "")."""
    if not os.path.isdir(folder):
        return "fresh", ""
    final = final_test(read_records(folder), max_epochs)
    if final is not None and os.path.isfile(os.path.join(folder, FINAL)):
        return "done", ""
    try:
        path, _ = find_resumable(folder)
    except RunDirError:
        return "fresh", "it holds a run but no checkpoint that loads completely"
    return ("resume", "") if path else ("fresh", "")


def drop_resume_state(folder):
    """Remove a finished run's resume checkpoint (last.pth) and the file naming it; periodic
    checkpoints (SOLVER.CHECKPOINT_PERIOD) and model_final / model_best stay."""
    for name in (LAST, RESUME):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            os.remove(path)


def best_done(folder):
    """Whether model_best.pth's test results are recorded (and newer than the file)."""
    metrics = os.path.join(folder, BEST_DIR, TEST_METRICS)
    best = os.path.join(folder, "model_best.pth")
    return (
        os.path.isfile(metrics)
        and os.path.isfile(best)
        and os.path.getmtime(metrics) >= os.path.getmtime(best)
        and best_results(folder) is not None
    )


def best_results(folder):
    """{pattern: metrics} of test_net.py's evaluation of model_best.pth, or None."""
    return last_test(read_records(os.path.join(folder, BEST_DIR), TEST_METRICS))


def _flat(node, prefix=""):
    out = {}
    for k, v in node.items():
        if hasattr(v, "items"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = tuple(v) if isinstance(v, list) else v
    return out


def config_diff(a, b, ignore=()):
    """[(key, value in a, value in b)] of the keys whose values differ."""
    fa, fb = _flat(a), _flat(b)
    return [
        (k, fa.get(k), fb.get(k))
        for k in sorted(set(fa) | set(fb))
        if k not in ignore and fa.get(k) != fb.get(k)
    ]


def _check_same_config(run):
    path = os.path.join(run.folder, "config.yaml")
    if not os.path.isfile(path):
        raise StudyError(
            f"{run.folder} holds a run but no config.yaml, so what trained it is "
            "unknown; remove that folder to retrain it"
        )
    diff = config_diff(_load(path, []), run.cfg, RESULT_NEUTRAL)
    if diff:
        shown = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in diff[:3])
        more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
        raise StudyError(
            f"{run.folder} was trained with another config ({shown}{more}); pass "
            "another --out, or remove that folder to retrain it"
        )


def _check_not_running(folder):
    """A run folder whose train.lock a live run holds (a train_net.py started by hand, or by
    another study) must not be cleared or resumed."""
    if not os.path.isfile(os.path.join(folder, TRAIN_LOCK)):
        return
    try:
        RunLock(folder).acquire().release()
    except RunDirError as e:
        raise StudyError(str(e)) from None


def lock_study(out):
    """Hold OUT/compare.lock for the life of this process (released by the kernel when it ends,
    even killed): two studies must not run the same runs at once."""
    lock = RunLock(
        out,
        STUDY_LOCK,
        "the study folder {folder} is in use by another "
        "tools/compare.py ({holder}): wait for it to end, or stop it",
    )
    try:
        lock.acquire()
    except RunDirError as e:
        raise StudyError(str(e)) from None
    lock.stamp()
    return lock


def release(study):
    """Let go of OUT/compare.lock (also released when the process ends)."""
    if study.lock is not None:
        study.lock.release()
        study.lock = None


def on_gpu(study):
    """Whether the study's runs train on a GPU (MODEL.DEVICE auto or cuda, and one visible)."""
    return torch.cuda.is_available() and all(e.cfg.MODEL.DEVICE != "cpu" for e in study.entries)


def gpu_ids():
    """The GPUs runs are spread over: CUDA_VISIBLE_DEVICES's entries, else 0..count-1."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def default_parallel(study):
    """1 on the CPU (a run uses every core); GPU_RUNS_PER_DEVICE per GPU."""
    return GPU_RUNS_PER_DEVICE * max(1, len(gpu_ids())) if on_gpu(study) else 1


@dataclasses.dataclass
class Job:
    """The commands one process slot runs one after the other: training (or resuming) `runs` (a
    resumed run alone, or fresh runs of one config that one `train_net.py --seeds` process trains),
    then the model_best.pth evaluations of those runs."""

    runs: list  # [Run]: the first is the one its training process starts with
    steps: list  # [(kind, argv, run)], kind: "train", "resume" or "best"
    compiles: bool = False  # a training step under SOLVER.COMPILE
    step: int = 0
    proc: object = None
    offset: int = 0  # size of metrics.json when the training step started
    rc: int = None  # exit status of the last step run; None while running or not started
    env: dict = None  # the environment its steps run in (its slot's GPU)
    gate: str = None  # a file to wait for before the first training step (`execute`)

    @property
    def run(self):
        return self.runs[0]


def process_groups(study, parallel, share):
    """The runs each training process takes, in the order they start: a resumed run alone; with
    `share`, a config's fresh runs dealt out over at most `parallel` processes (seeds 1-5 over 3:
    1 4, 2 5, 3), each training its runs one after another (`train_net.py --seeds`: one import,
    one data index, one compilation); without it, one process a run. Ordered by their first run's
    place in the study (seed-major: the first run of every config starts first)."""
    order = {id(r): i for i, r in enumerate(study.runs)}
    groups = [[r] for r in study.runs if r.state == "resume" or (r.state == "fresh" and not share)]
    if share:
        for e in study.entries:
            fresh = [r for r in study.runs if r.entry is e and r.state == "fresh"]
            k = min(parallel, len(fresh))
            groups += [fresh[g::k] for g in range(k)]
    return sorted(groups, key=lambda g: order[id(g[0])])


def _train_argv(study, runs):
    run = runs[0]
    if len(runs) > 1:  # fresh runs, each into OUTPUT_DIR/seed_<s>
        extra, over = ["--seeds", *(str(r.seed) for r in runs)], ["OUTPUT_DIR", run.entry.folder]
    else:
        extra = ["--resume"] if run.state == "resume" else []
        over = ["SOLVER.SEED", str(run.seed), "OUTPUT_DIR", run.folder]
    return [
        sys.executable,
        TRAIN_SCRIPT,
        "--config_file",
        run.entry.file,
        *extra,
        *study.opts,
        *over,
    ]


def _best_argv(study, run):
    return [
        sys.executable,
        TEST_SCRIPT,
        "--config_file",
        run.entry.file,
        *study.opts,
        "SOLVER.SEED",
        str(run.seed),
        "OUTPUT_DIR",
        os.path.join(run.folder, BEST_DIR),
        "TEST.WEIGHT",
        os.path.join(run.folder, "model_best.pth"),
    ]


def make_jobs(study, parallel=1, share=False):
    """The Jobs of the runs that are not done (`process_groups` says which process trains which
    runs); a done run of a config with a validation split may still need its model_best.pth
    evaluated."""
    jobs = []
    for runs in process_groups(study, parallel, share):
        steps = [
            ("resume" if runs[0].state == "resume" else "train", _train_argv(study, runs), runs[0])
        ]
        steps += [("best", _best_argv(study, r), r) for r in runs if r.entry.has_val]
        jobs.append(Job(runs, steps, bool(runs[0].cfg.SOLVER.COMPILE)))
    for run in study.runs:
        if run.state == "done" and run.entry.has_val and run.needs_best:
            jobs.append(Job([run], [("best", _best_argv(study, run), run)]))
        elif run.state == "done":
            run.action = "reused"
    return jobs


def study_env(study, parallel, gpu):
    """The environment of every run: one inductor cache for the whole study; on the CPU the
    cores shared out between the runs that go at once (unless OMP_NUM_THREADS is set)."""
    env = dict(os.environ)
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(study.out, CACHE_DIR))
    env["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "1"
    env["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "1"
    if not gpu and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))
    return env


def spawn(argv, env, console):
    """Start one run's command with its output appended to `console` (an open file)."""
    return subprocess.Popen(
        argv, env=env, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )


def _warm(job):
    """Whether a compiling run has trained a logged window since it started: its graphs are
    compiled and in the shared cache (or it has ended)."""
    if job.rc is not None:
        return True
    if job.proc is None:
        return False
    path = os.path.join(job.run.folder, METRICS_FILE)
    try:
        with open(path) as f:
            f.seek(job.offset)
            return '"type": "train"' in f.read()
    except OSError:
        return False


def _step_runs(job):
    """The runs the job's current step is for: the process's runs for training, one for "best"."""
    kind, _, run = job.steps[job.step]
    return [run] if kind == "best" else job.runs


def _start(job, env, spawner):
    kind, argv, run = job.steps[job.step]
    if job.gate and kind != "best":  # set up now, train once the config's first run has compiled
        argv = [*argv[:2], "--start-after", job.gate, *argv[2:]]
    if kind == "train":
        for r in _step_runs(job):
            if os.path.isdir(r.folder):
                logger.info("clearing %s: %s", r.folder, r.why or "no intact checkpoint")
                shutil.rmtree(r.folder)
    if kind == "best":
        shutil.rmtree(os.path.join(run.folder, BEST_DIR), ignore_errors=True)
    os.makedirs(run.folder, exist_ok=True)
    metrics = os.path.join(run.folder, METRICS_FILE)
    job.offset = os.path.getsize(metrics) if os.path.isfile(metrics) else 0
    seeds = " ".join(str(r.seed) for r in _step_runs(job))
    logger.info(
        "%s %s seed%s %s: %s",
        {"train": "training", "resume": "resuming", "best": "evaluating model_best.pth of"}[kind],
        run.entry.label,
        "s" if " " in seeds else "",
        seeds,
        " ".join(argv[1:]),
    )
    with open(os.path.join(run.folder, CONSOLE), "a") as console:
        job.proc = spawner(argv, env, console)
    job.rc = None


def _finish(job):
    """One step ended: True when the job has another step to start."""
    kind, _, run = job.steps[job.step]
    runs = _step_runs(job)
    done_as = {"train": "trained", "resume": "resumed", "best": "evaluated"}[kind]
    if job.rc != 0:
        script = "test_net.py" if kind == "best" else "train_net.py"
        for r in runs:  # a process of several runs may have finished some of them
            if kind != "best" and run_state(r.folder, r.cfg.SOLVER.MAX_EPOCHS)[0] == "done":
                r.action = done_as
                continue
            r.action = "failed"
            r.error = (
                f"{script} exited with status {job.rc}; its output is in "
                f"{os.path.join(run.folder, CONSOLE)}"
            )
            logger.error("%s seed %d: %s", r.entry.label, r.seed, r.error)
        return False
    for r in runs:
        r.action = r.action or done_as
    job.step += 1
    return job.step < len(job.steps)


def execute(study, jobs, parallel, spawner=None):
    """Run the jobs, up to `parallel` at once (each command through `spawner`, default `spawn`).

    Under SOLVER.COMPILE the first run of a config compiles alone: the others start at once and
    set up (process, data, model, loaders: most of a run's fixed cost), then wait before their
    first step (`train_net.py --start-after`) until the first one has compiled (a logged training
    window, or its end), and load its graphs from the shared cache instead of compiling them too.
    """
    spawner = spawner or spawn
    gpu = on_gpu(study)
    env = study_env(study, parallel, gpu)
    gpus = gpu_ids() if gpu else []
    gates = os.path.join(study.out, GATE_DIR)
    shutil.rmtree(gates, ignore_errors=True)  # a gate opens afresh in every invocation
    os.makedirs(gates)
    with open(os.path.join(gates, OWNER_FILE), "w") as f:
        f.write(str(os.getpid()))
    closed = {}  # gate file -> the first run of its config, which opens it
    for j in jobs:
        if j.compiles:
            gate = os.path.join(gates, os.path.basename(j.run.entry.folder))
            if closed.setdefault(gate, j) is not j:
                j.gate = gate
    pending, running = list(jobs), {}
    try:
        while pending or running:
            for slot in range(parallel):
                if slot in running or not pending:
                    continue
                job = pending.pop(0)
                job.env = env
                if len(gpus) > 1:  # slot k trains on GPU k mod the number of GPUs
                    job.env = {**env, "CUDA_VISIBLE_DEVICES": gpus[slot % len(gpus)]}
                _start(job, job.env, spawner)
                running[slot] = job
            time.sleep(POLL_S)
            for gate, lead in list(closed.items()):
                if _warm(lead):
                    open(gate, "w").close()
                    del closed[gate]
            for slot, job in list(running.items()):
                rc = job.proc.poll()
                if rc is None:
                    continue
                job.rc = rc
                if _finish(job):
                    _start(job, job.env, spawner)
                else:
                    del running[slot]
                    if rc == 0 and not study.keep_last:
                        for run in job.runs:
                            drop_resume_state(run.folder)
    except KeyboardInterrupt:
        for job in running.values():
            job.proc.terminate()
        for job in running.values():
            job.proc.wait()
        raise


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def wait_for_gate(path, poll_s=0.2):
    """Block until `path` exists (`execute` opened the gate), or until the study process that
    owns its folder (OWNER_FILE beside it) has ended, so that an orphaned run goes on alone;
    returns the seconds waited."""
    if os.path.exists(path):
        return 0.0
    try:
        with open(os.path.join(os.path.dirname(path), OWNER_FILE)) as f:
            owner = int(f.read())
    except (OSError, ValueError):
        owner = None  # no owner recorded: nothing to wait for
    start = time.monotonic()
    logger.info("set up; waiting for the first run of this config to compile (%s)", path)
    while owner is not None and not os.path.exists(path) and _alive(owner):
        time.sleep(poll_s)
    waited = time.monotonic() - start
    logger.info("waited %.1f s for the compiled graphs", waited)
    return waited


def collect(study):
    """Read every run's final (and best) test results from disk into the Run objects; a run that
    should be done but is not gets an error."""
    for run in study.runs:
        max_epochs = run.cfg.SOLVER.MAX_EPOCHS
        state, _ = run_state(run.folder, max_epochs)
        if state == "done":
            run.final = final_test(read_records(run.folder), max_epochs)
            if not study.keep_last:  # also runs an earlier invocation finished
                drop_resume_state(run.folder)
        elif not run.error:
            run.error = f"{run.folder} holds no finished run"
        if run.entry.has_val and state == "done":
            best = os.path.join(run.folder, "model_best.pth")
            run.best = best_results(run.folder)
            if os.path.isfile(best):
                ckpt = load_checkpoint(best, mmap=True)
                run.best_epoch = (ckpt.get("extra") or {}).get("best_epoch", ckpt.get("epoch"))
            if run.best is None and not run.error:
                run.error = f"no test results of {best}"
    return study
