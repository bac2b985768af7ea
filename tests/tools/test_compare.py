"""tools/compare.py and engine/compare*.py: planning and the state of run folders, the commands
and the scheduler (fake processes), which t-test applies, the report's numbers, bad input, and
two configs x two seeds end to end with a killed and a damaged run resumed / restarted."""

import fcntl
import json
import math
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from config import dump_config
from engine import compare, compare_report
from tools import compare as compare_tool
from utils import stats

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(REPO, "configs", "_smoke")
DEMO, SDTPS = os.path.join(SMOKE, "DeMo.yml"), os.path.join(SMOKE, "DeMo_SDTPS.yml")


@pytest.fixture
def planned(tmp_path):
    """planned(configs, seeds, opts) -> compare.plan(...) into tmp_path/study, released after."""
    studies = []

    def make(configs=(DEMO, SDTPS), seeds=(1, 2), opts=(), out=None):
        study = compare.plan(list(configs), list(seeds), list(opts), str(out or tmp_path / "study"))
        studies.append(study)
        return study

    yield make
    for s in studies:
        compare.release(s)


def derived_config(tmp_path, name, body, folder="extra"):
    """A YAML file <folder>/<name> that inherits configs/_smoke/DeMo.yml."""
    d = tmp_path / folder
    d.mkdir(exist_ok=True)
    path = d / name
    path.write_text(f"_BASE_: {DEMO}\n{body}")
    return str(path)


def result(m):
    return {"mAP": m, "mINP": m / 2, "R1": m + 1, "R5": 100.0, "R10": 100.0}


def fake_run(
    run, final=True, model_final=True, ckpt_epoch=None, ckpt_name="last.pth", final_map=50.0
):
    """A run folder as train_net.py leaves it (config.yaml, metrics.json, checkpoints)."""
    os.makedirs(run.folder, exist_ok=True)
    dump_config(run.cfg, os.path.join(run.folder, "config.yaml"))
    epochs = run.cfg.SOLVER.MAX_EPOCHS
    lines = [{"type": "train", "epoch": 1, "iter": 3, "step": 3, "loss_total": 2.0}]
    if final:
        lines.append(
            {
                "type": "eval",
                "split": "test",
                "epoch": epochs,
                "results": {str(p): result(final_map + p) for p in (1, 2, 3)},
            }
        )
    with open(os.path.join(run.folder, "metrics.json"), "w") as f:
        f.writelines(json.dumps(x) + "\n" for x in lines)
    if model_final:
        torch.save({"model": {}, "epoch": epochs}, os.path.join(run.folder, "model_final.pth"))
    if ckpt_epoch is not None:
        torch.save(
            {"model": {"w": torch.zeros(2)}, "optimizer": {"state": {}}, "epoch": ckpt_epoch},
            os.path.join(run.folder, ckpt_name),
        )
        (open(os.path.join(run.folder, "last_checkpoint"), "w")).write(ckpt_name)


# ------------------------------------------------------------------------------------------------
# planning, folder names, states
# ------------------------------------------------------------------------------------------------


def test_folders_are_named_by_dataset_and_config(planned, tmp_path):
    study = planned()
    names = [os.path.relpath(r.folder, study.out) for r in study.runs]
    # seed-major: the first run of every config comes first
    assert names == [
        "RGBNT201-DeMo/seed_1",
        "RGBNT201-DeMo_SDTPS/seed_1",
        "RGBNT201-DeMo/seed_2",
        "RGBNT201-DeMo_SDTPS/seed_2",
    ]
    assert [r.cfg.SOLVER.SEED for r in study.runs] == [1, 1, 2, 2]
    assert all(r.cfg.OUTPUT_DIR == r.folder for r in study.runs)
    assert [e.label for e in study.entries] == ["DeMo", "DeMo_SDTPS"]


def test_same_file_name_in_two_folders_and_datasets(planned, tmp_path):
    other = derived_config(tmp_path, "DeMo.yml", "SOLVER:\n  BASE_LR: 0.001\n")
    msvr = derived_config(tmp_path, "DeMo.yml", "DATASETS:\n  NAMES: MSVR310\n", folder="msvr")
    study = planned([DEMO, other, msvr], seeds=[3])
    assert [os.path.basename(e.folder) for e in study.entries] == [
        "RGBNT201-_smoke_DeMo",
        "RGBNT201-extra_DeMo",
        "MSVR310-DeMo",
    ]
    # several datasets: the labels say which
    assert [e.label for e in study.entries] == [
        "RGBNT201-_smoke_DeMo",
        "RGBNT201-extra_DeMo",
        "MSVR310-DeMo",
    ]


def test_run_states_read_from_disk(planned, tmp_path):
    first = planned()
    demo1, sdtps1, demo2, sdtps2 = first.runs
    fake_run(demo1)  # finished
    fake_run(demo2, final=False, model_final=False, ckpt_epoch=1)  # killed in epoch 2
    fake_run(sdtps1, final=False, model_final=False, ckpt_epoch=1)
    with open(os.path.join(sdtps1.folder, "last.pth"), "wb") as f:
        f.write(b"a damaged checkpoint")  # nothing intact to resume from
    os.makedirs(sdtps2.folder)
    open(os.path.join(sdtps2.folder, "console.txt"), "w").write("killed before its config\n")
    compare.release(first)
    study = planned()
    assert [(r.state, r.why) for r in study.runs] == [
        ("done", ""),
        ("fresh", "it holds a run but no checkpoint that loads completely"),
        ("resume", ""),
        ("fresh", ""),
    ]
    jobs = compare.make_jobs(study)
    assert [j.run for j in jobs] == study.runs[1:] and study.runs[0].action == "reused"
    kinds = [[kind for kind, *_ in j.steps] for j in jobs]
    assert kinds == [["train"], ["resume"], ["train"]]
    argv = jobs[1].steps[0][1]
    assert argv[1] == compare.TRAIN_SCRIPT and "--resume" in argv
    assert argv[-4:] == ["SOLVER.SEED", "2", "OUTPUT_DIR", demo2.folder]
    assert "--resume" not in jobs[0].steps[0][1]


def test_checkpoint_at_the_last_epoch_without_final_results_is_resumed(planned):
    run = planned(configs=[DEMO], seeds=[1]).runs[0]
    epochs = run.cfg.SOLVER.MAX_EPOCHS
    # killed during the final evaluation: the trainer's --resume finishes it
    fake_run(run, final=False, model_final=False, ckpt_epoch=epochs)
    assert compare.run_state(run.folder, epochs) == ("resume", "")
    fake_run(run, final=True, model_final=False, ckpt_epoch=epochs)  # killed before model_final
    assert compare.run_state(run.folder, epochs) == ("resume", "")


def test_validation_split_adds_the_model_best_evaluation(planned):
    study = planned(configs=[DEMO], seeds=[1], opts=["DATASETS.VAL_FRACTION", "0.25"])
    (job,) = compare.make_jobs(study)
    (_, train, _), (kind, test, _) = job.steps
    assert kind == "best" and test[1] == compare.TEST_SCRIPT
    run = study.runs[0]
    assert test[-4:] == [
        "OUTPUT_DIR",
        os.path.join(run.folder, compare.BEST_DIR),
        "TEST.WEIGHT",
        os.path.join(run.folder, "model_best.pth"),
    ]


def test_a_run_of_another_config_stops_the_planning(planned, tmp_path):
    first = planned(configs=[DEMO], seeds=[1])
    run = first.runs[0]
    fake_run(run)
    compare.release(first)
    # a key that only changes speed is not a different config
    faster = planned(
        configs=[DEMO],
        seeds=[1],
        opts=["DATALOADER.NUM_WORKERS", "3", "DATALOADER.PIPELINE", "plain"],
    )
    assert faster.runs[0].state == "done"
    compare.release(faster)
    with pytest.raises(compare.StudyError) as e:
        planned(configs=[DEMO], seeds=[1], opts=["SOLVER.BASE_LR", "0.1"])
    assert str(e.value) == (
        f"{run.folder} was trained with another config (SOLVER.BASE_LR: "
        "0.002 there, 0.1 now); pass another --out, or remove that folder to "
        "retrain it"
    )


def test_a_run_folder_in_demo_names_is_reused(planned, old_names):
    """A finished run whose config.yaml was written before the renames (DeMo's key names) is the
    same config as today's, and a changed value under an old name is still a change."""
    first = planned(configs=[DEMO], seeds=[1])
    run = first.runs[0]
    fake_run(run)
    compare.release(first)
    path = os.path.join(run.folder, "config.yaml")
    text = open(path).read()
    open(path, "w").write(old_names(text))
    again = planned(configs=[DEMO], seeds=[1])
    assert again.runs[0].state == "done"
    compare.release(again)
    with pytest.raises(compare.StudyError, match="SOLVER.WARMUP_EPOCHS: 2 there, 5 now"):
        planned(configs=[DEMO], seeds=[1], opts=["SOLVER.WARMUP_EPOCHS", "5"])


def test_live_runs_and_a_second_study_are_refused(planned, tmp_path):
    study = planned(configs=[DEMO], seeds=[1])
    with pytest.raises(compare.StudyError, match="in use by another tools/compare.py"):
        planned(configs=[DEMO], seeds=[1])
    compare.release(study)
    folder = study.runs[0].folder
    os.makedirs(folder)
    with open(os.path.join(folder, "train.lock"), "a+") as held:  # a live train_net.py
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(compare.StudyError, match="is in use by a live run"):
            planned(configs=[DEMO], seeds=[1])
    assert planned(configs=[DEMO], seeds=[1]).runs[0].state == "fresh"  # lock released


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config", "nope.yml", "--seeds", "1"], "compare: config file not found: nope.yml"),
        (
            ["--config", DEMO, "--config", DEMO, "--seeds", "1"],
            f"compare: --config {DEMO} is given twice",
        ),
        (["--config", DEMO], "compare: give the seeds: --seeds 1 2 3"),
        (["--seeds", "1"], "compare: give the configs to compare: --config A.yml --config B.yml"),
        (["--config", DEMO, "--seeds", "1", "1"], "compare: --seeds: seed 1 is given twice"),
        (
            ["--config", DEMO, "--seeds", "-3"],
            "compare: --seeds: -3 is negative; seeds are integers >= 0",
        ),
        (
            ["--config", DEMO, "--seeds", "1", "SOLVER.SEED", "4"],
            "compare: SOLVER.SEED is set per run by --seeds; remove it from the overrides",
        ),
        (
            ["--config", DEMO, "--seeds", "1", "SOLVER.BASE_LR"],
            "compare: overrides come in KEY VALUE pairs; got an odd list: SOLVER.BASE_LR",
        ),
        (
            ["--config", DEMO, "--seeds", "1", "--parallel", "0"],
            "compare: --parallel must be 1 or more, got 0",
        ),
        (
            ["--config", DEMO, "--seeds", "1", "--out", "a", "OUTPUT_DIR", "b"],
            "compare: --out a and OUTPUT_DIR b disagree; give one",
        ),
        (
            ["--config", DEMO, "--seeds", "1", "SOLVER.BASE_LRR", "1"],
            "compare: unknown config key SOLVER.BASE_LRR",
        ),
        (
            ["--config", DEMO, "--seeds", "1", "SOLVER.BASE_LR", "1", "--paralel", "2"],
            "compare: unknown option --paralel (see --help)",
        ),
    ],
)
def test_bad_input_gets_one_line(argv, message, capsys, tmp_path):
    if "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "study")]
    assert compare_tool.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "study" / "RGBNT201-DeMo").exists()


def test_seeds_then_overrides_then_options(tmp_path, capsys):
    out = tmp_path / "study"
    argv = [
        "--config",
        DEMO,
        "--seeds",
        "4",
        "7",
        "SOLVER.MAX_EPOCHS",
        "3",
        "--out",
        str(out),
        "TEST.RE_RANKING",
        "True",
        "--dry-run",
    ]
    args, opts, got_out = compare_tool.parse(argv)
    assert (args.seeds, opts, got_out, args.dry_run) == (
        [4, 7],
        ["SOLVER.MAX_EPOCHS", "3", "TEST.RE_RANKING", "True"],
        str(out),
        True,
    )
    assert compare_tool.main(argv) == 0
    assert not (out / "RGBNT201-DeMo").exists()  # a dry run trains nothing
    study = compare.plan([DEMO], [4, 7], ["SOLVER.MAX_EPOCHS", "3"], str(out))
    compare.release(study)
    assert [r.cfg.SOLVER.MAX_EPOCHS for r in study.runs] == [3, 3]


# ------------------------------------------------------------------------------------------------
# the scheduler, with fake processes
# ------------------------------------------------------------------------------------------------


class FakeProc:
    """A run that logs a training window at its 3rd poll and exits with `rc` at its 6th; given a
    gate (`--start-after`), it notes in the timeline when it first sees the gate open."""

    def __init__(self, folder, kind, timeline, name, rc=0, gate=None):
        self.folder, self.kind, self.timeline, self.name, self.rc = folder, kind, timeline, name, rc
        self.gate, self.polls, self.pid = gate, 0, 12345

    def poll(self):
        self.polls += 1
        if self.gate and os.path.exists(self.gate):
            self.timeline.append(("gate open", self.name))
            self.gate = None
        if self.kind == "train" and self.polls == 3:
            with open(os.path.join(self.folder, "metrics.json"), "a") as f:
                f.write(json.dumps({"type": "train", "epoch": 1, "iter": 1, "step": 1}) + "\n")
            self.timeline.append(("record", self.name))
        if self.polls >= 6:
            self.timeline.append(("end", self.name))
            return self.rc
        return None


def fake_spawner(timeline, envs, rc=0, argvs=None):
    def spawn(argv, env, console):
        folder = argv[argv.index("OUTPUT_DIR") + 1]
        if "--seeds" in argv:  # one process of several runs: its first seed trains first
            folder = os.path.join(folder, f"seed_{argv[argv.index('--seeds') + 1]}")
        kind = "best" if argv[1] == compare.TEST_SCRIPT else "train"
        run_folder = os.path.dirname(folder) if kind == "best" else folder
        name = f"{os.path.basename(os.path.dirname(run_folder))}/{os.path.basename(run_folder)}"
        timeline.append(("start", name if kind == "train" else name + " best"))
        envs.append(env)
        if argvs is not None:
            argvs[name] = argv
        gate = argv[argv.index("--start-after") + 1] if "--start-after" in argv else None
        return FakeProc(folder, kind, timeline, name, rc, gate)

    return spawn


def test_a_compiled_configs_other_seeds_set_up_at_once_and_train_after_the_first_compiled(
    planned, tmp_path, monkeypatch
):
    monkeypatch.setattr(compare, "POLL_S", 0.0)
    for var in ("TORCHINDUCTOR_CACHE_DIR", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    compiled = derived_config(tmp_path, "Compiled.yml", "SOLVER:\n  COMPILE: True\n")
    study = planned([compiled, SDTPS], seeds=[1, 2])
    timeline, envs, argvs = [], [], {}
    jobs = compare.make_jobs(study)
    assert [j.compiles for j in jobs] == [True, False, True, False]
    compare.execute(study, jobs, 4, fake_spawner(timeline, envs, argvs=argvs))
    starts = [n for e, n in timeline if e == "start"]
    assert starts == [  # every slot filled at once
        "RGBNT201-Compiled/seed_1",
        "RGBNT201-DeMo_SDTPS/seed_1",
        "RGBNT201-Compiled/seed_2",
        "RGBNT201-DeMo_SDTPS/seed_2",
    ]
    gate = os.path.join(study.out, compare.GATE_DIR, "RGBNT201-Compiled")
    # Only the compiled config's second seed waits, for the gate its first seed's window opens.
    follower = argvs["RGBNT201-Compiled/seed_2"]
    assert follower[1:4] == [compare.TRAIN_SCRIPT, "--start-after", gate]
    assert all(
        "--start-after" not in a for n, a in argvs.items() if n != "RGBNT201-Compiled/seed_2"
    )
    assert timeline.index(("record", "RGBNT201-Compiled/seed_1")) < timeline.index(
        ("gate open", "RGBNT201-Compiled/seed_2")
    )
    assert timeline.index(("gate open", "RGBNT201-Compiled/seed_2")) < timeline.index(
        ("end", "RGBNT201-Compiled/seed_1")
    )  # it did not wait for the end
    cache = os.path.join(study.out, compare.CACHE_DIR)
    assert all(e["TORCHINDUCTOR_CACHE_DIR"] == cache for e in envs)
    assert all(e["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1" for e in envs)
    assert {e["OMP_NUM_THREADS"] for e in envs} == {str(max(1, os.cpu_count() // 4))}
    assert [r.action for r in study.runs] == ["trained"] * 4


def test_a_configs_new_runs_are_dealt_out_over_the_processes(planned):
    first = planned(seeds=[1, 2, 3, 4, 5])
    fake_run(first.runs[4], final=False, model_final=False, ckpt_epoch=1)  # DeMo seed 3: resume
    fake_run(first.runs[9])  # DeMo_SDTPS seed 5: done
    compare.release(first)
    study = planned(seeds=[1, 2, 3, 4, 5])
    jobs = compare.make_jobs(study, 3, share=True)
    got = [(j.run.entry.name, [r.seed for r in j.runs], j.steps[0][0]) for j in jobs]
    assert got == [  # seed-major by each process's first run
        ("DeMo", [1, 5], "train"),
        ("DeMo_SDTPS", [1, 4], "train"),
        ("DeMo", [2], "train"),
        ("DeMo_SDTPS", [2], "train"),
        ("DeMo", [3], "resume"),
        ("DeMo_SDTPS", [3], "train"),
        ("DeMo", [4], "train"),
    ]
    argv = jobs[0].steps[0][1]
    demo = study.entries[0]
    assert argv[1:6] == [compare.TRAIN_SCRIPT, "--config_file", demo.file, "--seeds", "1"]
    assert argv[6] == "5" and argv[-2:] == ["OUTPUT_DIR", demo.folder]
    assert "SOLVER.SEED" not in argv  # train_net.py sets it per seed
    # the runs land where the study looks for them
    assert [os.path.join(demo.folder, f"seed_{s}") for s in (1, 5)] == [
        r.folder for r in jobs[0].runs
    ]
    assert jobs[2].steps[0][1][-4:] == ["SOLVER.SEED", "2", "OUTPUT_DIR", study.runs[2].folder]
    assert "--resume" in jobs[4].steps[0][1]
    assert study.runs[9].action == "reused"
    alone = compare.make_jobs(study, 3, share=False)
    assert [len(j.runs) for j in alone] == [1] * 9


def test_a_process_of_several_runs_that_fails_fails_only_its_unfinished_runs(planned, monkeypatch):
    monkeypatch.setattr(compare, "POLL_S", 0.0)
    study = planned(configs=[DEMO], seeds=[1, 2, 3])
    timeline, envs = [], []
    spawn = fake_spawner(timeline, envs, rc=1)

    def first_finishes(argv, env, console):
        fake_run(study.runs[0])  # seed 1 trained to its end, then seed 2 stopped the process
        return spawn(argv, env, console)

    (job,) = compare.make_jobs(study, 1, share=True)
    compare.execute(study, [job], 1, first_finishes)
    assert [e for e in timeline if e[0] == "start"] == [("start", "RGBNT201-DeMo/seed_1")]
    assert [r.action for r in study.runs] == ["trained", "failed", "failed"]
    console = os.path.join(study.runs[0].folder, "console.txt")
    assert study.runs[2].error == f"train_net.py exited with status 1; its output is in {console}"
    assert study.runs[0].error == ""


def _gates(tmp_path, owner):
    (tmp_path / compare.OWNER_FILE).write_text(str(owner))
    return tmp_path / "gate"


def test_wait_for_gate_returns_once_the_gate_opens(tmp_path):
    gate = _gates(tmp_path, os.getpid())
    opener = threading.Timer(0.5, gate.touch)
    opener.start()
    waited = compare.wait_for_gate(str(gate), poll_s=0.05)
    assert gate.exists() and 0.4 < waited < 5
    assert compare.wait_for_gate(str(gate)) == 0.0  # open: no wait


def test_a_run_whose_study_process_ended_stops_waiting(tmp_path):
    """A run whose study process was killed does not wait forever for a gate no one will open:
    it goes on alone (compiling for itself)."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    waited = compare.wait_for_gate(str(_gates(tmp_path, ended.pid)), poll_s=0.05)
    assert waited < 5


@pytest.mark.slow
def test_train_net_sets_up_then_trains_once_its_gate_opens(synthetic_root, tmp_path, fast):
    out, gate = tmp_path / "run", _gates(tmp_path, os.getpid())
    cmd = [sys.executable, os.path.join(REPO, "train_net.py"), "--start-after", str(gate)]
    cmd += ["--config_file", DEMO, "DATASETS.ROOT_DIR", synthetic_root, "OUTPUT_DIR", str(out)]
    proc = subprocess.Popen([*cmd, *fast(1)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / "log.txt"
    deadline = time.monotonic() + 120
    while "waiting for the first run" not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.1)
    time.sleep(1.0)
    assert not (out / "metrics.json").exists()  # set up, not training
    gate.touch()
    assert proc.wait(timeout=120) == 0
    text = log.read_text()
    assert "waited" in text and "run done" in text


def test_a_failed_run_stops_its_job_and_says_where_its_output_is(planned, monkeypatch):
    monkeypatch.setattr(compare, "POLL_S", 0.0)
    study = planned(configs=[DEMO], seeds=[1], opts=["DATASETS.VAL_FRACTION", "0.25"])
    timeline, envs = [], []
    compare.execute(study, compare.make_jobs(study), 1, fake_spawner(timeline, envs, rc=1))
    run = study.runs[0]
    assert [e for e in timeline if e[0] == "start"] == [("start", "RGBNT201-DeMo/seed_1")]
    assert run.action == "failed"
    assert run.error == (
        "train_net.py exited with status 1; its output is in "
        f"{os.path.join(run.folder, 'console.txt')}"
    )


# ------------------------------------------------------------------------------------------------
# which test, and the report's numbers
# ------------------------------------------------------------------------------------------------


def test_pairing_follows_what_a_seed_fixes(planned, tmp_path):
    from config import load_config

    demo, sdtps = load_config(DEMO), load_config(SDTPS)
    paired, why = compare_report.pairing(demo, sdtps)
    assert not paired and why.startswith(
        "Welch's t-test: the configs differ in MODEL.ATM, MODEL.HDM, MODEL.USE_SDTPS, which change"
    )
    lr = load_config(
        derived_config(
            tmp_path,
            "LR.yml",
            "SOLVER:\n  BASE_LR: 0.01\nMODEL:\n  ID_LOSS_WEIGHT: 0.5\nTEST:\n  RE_RANKING: True\n",
        )
    )
    paired, why = compare_report.pairing(demo, lr)
    assert paired and why == (
        "paired t-test on the per-seed differences: the configs differ only in "
        "MODEL.ID_LOSS_WEIGHT, SOLVER.BASE_LR, TEST.RE_RANKING, which change neither the data "
        "order nor the initialisation, so both runs of a seed see the same batches from the same "
        "initial weights"
    )
    aug = load_config(derived_config(tmp_path, "Aug.yml", "INPUT:\n  RE_PROB: 0.2\n"))
    assert compare_report.pairing(demo, aug)[0] is False  # other augmentation draws
    batch = load_config(derived_config(tmp_path, "Batch.yml", "SOLVER:\n  IMS_PER_BATCH: 16\n"))
    assert compare_report.pairing(demo, batch)[0] is False  # other batches
    plain = load_config(DEMO, ["DATALOADER.PIPELINE", "plain"])
    assert compare_report.pairing(demo, plain)[0] is True  # the same batches, bit for bit
    assert compare_report.pairing(demo, load_config(DEMO))[1].startswith(
        "paired t-test on the per-seed differences: the configs are identical"
    )


def _with_results(study, maps):
    """Give study.runs final results: maps[label] = mAP of pattern 3 per seed."""
    for r in study.runs:
        m = maps[r.entry.label][study.seeds.index(r.seed)]
        r.final = {p: result(m - 3 + p) for p in (1, 2, 3)}
        r.action = "reused"
    return study


def test_report_numbers_welch(planned, tmp_path):
    study = _with_results(
        planned(seeds=[1, 2, 3, 4, 5]), {"DeMo": [1, 2, 3, 4, 5], "DeMo_SDTPS": [2, 4, 6, 8, 10]}
    )
    payload = compare_report.build(study, command="tools/compare.py ...")
    s = payload["final"]["summary"]["DeMo"][3]["mAP"]
    # [1..5]: mean 3, std 1.581139, 95 % interval 3 -+ 1.963243 (tests/utils/test_stats.py)
    assert s["mean"] == 3.0 and s["std"] == pytest.approx(1.581139, abs=1e-6)
    assert s["ci"] == pytest.approx((1.036757, 4.963243), abs=1e-6)
    assert s["values"] == [1, 2, 3, 4, 5] and s["seeds"] == [1, 2, 3, 4, 5]
    (pair,) = payload["final"]["comparisons"]
    assert (pair["a"], pair["b"], pair["paired"]) == ("DeMo", "DeMo_SDTPS", False)
    row = next(r for r in pair["rows"] if r["pattern"] == 3 and r["metric"] == "mAP")
    # Welch, by hand: t = 3 / sqrt(0.5 + 2) = 1.897367, df = 5.882353
    assert row["test"] == "welch" and row["diff"] == 3.0
    assert row["t"] == pytest.approx(1.897367, abs=1e-6) and row["df"] == pytest.approx(5.882353)
    assert len(pair["rows"]) == 3 * 3  # patterns x (mAP, R1, mINP)
    assert payload["final"]["paste"] == "DeMo 3.0 ± 1.6 | DeMo_SDTPS 6.0 ± 3.2 (n=5)"
    md = compare_report.markdown(payload)
    assert "    DeMo 3.0 ± 1.6 | DeMo_SDTPS 6.0 ± 3.2 (n=5)" in md
    assert "| DeMo | 3 (ori+fused) | 5 | 3.00 ± 1.58 [1.04, 4.96] |" in md
    assert "| 3 | mAP | +3.00 [-0.89, +6.89] | 1.90 (5.9) | 0.108 |" in md
    assert f"Test: {pair['why']}." in md
    compare_report.write(payload, study.out)
    saved = json.load(open(os.path.join(study.out, "compare.json")))
    assert saved["final"]["summary"]["DeMo"]["3"]["mAP"]["ci"] == pytest.approx(list(s["ci"]))
    assert (open(os.path.join(study.out, "compare.md")).read()) == md


def test_report_numbers_paired_and_missing_runs(planned, tmp_path):
    lr = derived_config(tmp_path, "LR.yml", "SOLVER:\n  BASE_LR: 0.01\n")
    study = _with_results(
        planned([DEMO, lr], seeds=[1, 2, 3, 4, 5]), {"DeMo": [1, 2, 3, 4, 5], "LR": [2, 3, 5, 6, 7]}
    )
    payload = compare_report.build(study)
    (pair,) = payload["final"]["comparisons"]
    row = next(r for r in pair["rows"] if r["pattern"] == 3 and r["metric"] == "mAP")
    # per-seed differences [1, 1, 2, 2, 2]: mean 1.6, t = 6.531973 (4 df), ci [0.919913, 2.280087]
    assert pair["paired"] and row["test"] == "paired"
    assert row["t"] == pytest.approx(6.531973, abs=1e-6) and row["df"] == 4.0
    assert row["ci"] == pytest.approx((0.919913, 2.280087), abs=1e-6)
    # a run that failed: the pairs are the seeds both configs have
    failed = study.runs[-1]  # LR seed 5
    failed.final, failed.action = None, "failed"
    failed.error = "train_net.py exited with status 1"
    payload = compare_report.build(study)
    row = next(
        r
        for r in payload["final"]["comparisons"][0]["rows"]
        if r["pattern"] == 3 and r["metric"] == "mAP"
    )
    assert row["n_a"] == row["n_b"] == 4
    assert row["diff"] == pytest.approx(stats.mean([1, 1, 2, 2]))
    assert payload["final"]["paste"] == "DeMo 3.0 ± 1.6 (n=5) | LR 4.0 ± 1.8 (n=4)"
    assert "| LR | 5 | failed: train_net.py exited with status 1 |" in compare_report.markdown(
        payload
    )


# ------------------------------------------------------------------------------------------------
# end to end
# ------------------------------------------------------------------------------------------------

# the end-to-end study's runs: 2 epochs, each checkpointed and evaluated, a validation split
STUDY = ("SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.EVAL_PERIOD", "1")
STUDY += ("DATASETS.VAL_FRACTION", "0.25", "DATALOADER.NUM_WORKERS", "0")


def final_map(folder, pattern="3"):
    """The final test mAP read straight from a run's metrics.json."""
    lines = [json.loads(x) for x in open(os.path.join(folder, "metrics.json"))]
    (rec,) = [x for x in lines if x["type"] == "eval" and x["split"] == "test" and x["epoch"] == 2]
    return rec["results"][pattern]["mAP"]


def kill_in_epoch_2(folder):
    """Leave `folder` as a SIGKILL in epoch 2 does: epoch 1's checkpoint is the last one."""
    for name in ("model_0002.pth", "model_final.pth"):
        os.remove(os.path.join(folder, name))
    # (the study removed the finished run's last.pth and last_checkpoint; a kill leaves them)
    best = os.path.join(folder, "model_best.pth")
    if torch.load(best, weights_only=True, mmap=True)["epoch"] > 1:
        os.remove(best)  # epoch 2's better model was not there yet
    open(os.path.join(folder, "last_checkpoint"), "w").write("model_0001.pth")
    path = os.path.join(folder, "metrics.json")
    kept = [x for x in open(path) if (json.loads(x).get("epoch") or 0) <= 1]
    open(path, "w").writelines(kept)


@pytest.mark.slow
def test_two_configs_two_seeds_end_to_end_then_resume(synthetic_root, tmp_path, monkeypatch, fast):
    calls = []

    def counting(argv, env, console):
        calls.append(argv)
        return real(argv, env, console)

    real = compare.spawn
    monkeypatch.setattr(compare, "spawn", counting)
    out = tmp_path / "study"
    argv = [
        "--config",
        DEMO,
        "--config",
        SDTPS,
        "--seeds",
        "1",
        "2",
        "--out",
        str(out),
        "--parallel",
        "1",
        "DATASETS.ROOT_DIR",
        synthetic_root,
        *fast(2, *STUDY),
    ]
    assert compare_tool.main(argv) == 0
    scripts = [os.path.basename(c[1]) for c in calls]
    # one process trains both seeds of a config (train_net.py --seeds 1 2)
    assert scripts.count("train_net.py") == 2 and scripts.count("test_net.py") == 4
    assert all(c[c.index("--seeds") + 1 :][:2] == ["1", "2"] for c in calls if "--seeds" in c)
    first = json.load(open(out / "compare.json"))
    demo = [final_map(out / "RGBNT201-DeMo" / f"seed_{s}") for s in (1, 2)]
    sdtps = [final_map(out / "RGBNT201-DeMo_SDTPS" / f"seed_{s}") for s in (1, 2)]
    got = first["final"]["summary"]
    assert got["DeMo"]["3"]["mAP"]["values"] == demo
    assert got["DeMo"]["3"]["mAP"]["mean"] == pytest.approx(sum(demo) / 2)
    assert got["DeMo"]["3"]["mAP"]["std"] == pytest.approx(abs(demo[0] - demo[1]) / math.sqrt(2))
    (pair,) = first["final"]["comparisons"]
    row = next(r for r in pair["rows"] if r["pattern"] == 3 and r["metric"] == "mAP")
    assert row["test"] == "welch" and row["diff"] == pytest.approx(sum(sdtps) / 2 - sum(demo) / 2)
    assert "best" in first and set(first["best"]["summary"]) == {"DeMo", "DeMo_SDTPS"}
    for r in first["runs"]:
        assert r["action"] == "trained" and r["best_epoch"] in (1, 2)
        assert os.path.isfile(os.path.join(r["folder"], "best_test", "test_metrics.json"))
    for name in ("compare.md", "compare_curves.png", "compare_map.png", "compare_map_best.png"):
        assert (out / name).stat().st_size > 1000, name
    assert first["final"]["paste"] in (out / "compare.md").read_text()
    for r in first["runs"]:  # finished: only what resumes it is gone
        left = set(os.listdir(r["folder"]))
        assert {"model_final.pth", "model_0001.pth", "model_0002.pth"} <= left
        assert not {"last.pth", "last_checkpoint"} & left

    kill_in_epoch_2(out / "RGBNT201-DeMo" / "seed_2")
    damaged = out / "RGBNT201-DeMo_SDTPS" / "seed_1"
    os.remove(damaged / "model_final.pth")
    for name in ("last.pth", "model_0001.pth", "model_0002.pth"):
        (damaged / name).write_bytes(b"not a checkpoint")
    calls.clear()
    assert compare_tool.main([*argv, "--keep-last"]) == 0
    trains = [c for c in calls if c[1].endswith("train_net.py")]
    assert [(c[c.index("OUTPUT_DIR") + 1], "--resume" in c) for c in trains] == [
        (str(damaged), False),
        (str(out / "RGBNT201-DeMo" / "seed_2"), True),
    ]
    assert sum(c[1].endswith("test_net.py") for c in calls) == 2
    again = json.load(open(out / "compare.json"))
    assert [r["action"] for r in again["runs"]] == ["reused", "trained", "resumed", "reused"]
    kept = [os.path.isfile(os.path.join(r["folder"], "last.pth")) for r in again["runs"]]
    # --keep-last: the run trained again keeps epoch 1's last.pth; the resumed one trained only
    # its last epoch, whose checkpoint is model_final.pth
    assert kept == [False, True, False, False]
    log = (out / "RGBNT201-DeMo" / "seed_2" / "log.txt").read_text()
    assert "(epoch 1 finished)" in log
    # On the CPU a resumed run and a run started again in a process of its own repeat the
    # originals, trained two to a process, exactly.
    assert again["final"]["summary"] == first["final"]["summary"]
    assert again["best"]["summary"] == first["best"]["summary"]
