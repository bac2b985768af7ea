"""The run folder's owner and contents: the lock, leftover temporaries, what --resume compares."""

import pytest

from config import load_config
from engine.run_dir import RunDirError, RunLock, config_changes, take_run_folder


def test_leftover_temporaries_go_once_the_lock_is_held(tmp_path):
    (tmp_path / "last.pth").write_bytes(b"x")
    (tmp_path / "last.pth.tmp.4242").write_bytes(b"half a checkpoint")
    (tmp_path / "last_checkpoint.tmp.17").write_bytes(b"last")
    (tmp_path / "notes.tmp.txt").write_text("the user's")
    lock = take_run_folder(str(tmp_path), resume=True)
    lock.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth", "notes.tmp.txt", "train.lock"]


def test_temporaries_stay_while_another_run_holds_the_folder(tmp_path):
    (tmp_path / "last.pth.tmp.4242").write_bytes(b"being written")
    holder = RunLock(str(tmp_path)).acquire()
    holder.stamp()
    try:
        with pytest.raises(RunDirError, match="in use by a live run"):
            take_run_folder(str(tmp_path), resume=True)
    finally:
        holder.release()
    assert (tmp_path / "last.pth.tmp.4242").exists()


def test_a_new_run_over_an_old_one_is_refused(tmp_path):
    (tmp_path / "metrics.json").write_text("{}\n")
    with pytest.raises(RunDirError, match=r"already holds a training run \(metrics.json\)"):
        take_run_folder(str(tmp_path), resume=False)
    take_run_folder(str(tmp_path / "fresh"), resume=False).release()


def test_resume_compares_schedule_and_model_keys_only():
    saved = load_config(None, ["OUTPUT_DIR", "a"])
    now = load_config(
        None,
        [
            "OUTPUT_DIR",
            "b",
            "SOLVER.LOG_PERIOD",
            1,
            "TEST.MISS",
            "r",
            "DATALOADER.NUM_WORKERS",
            0,
            "DATALOADER.PIPELINE",
            "plain",
            "SOLVER.MAX_EPOCHS",
            60,
            "MODEL.SDTPS_SPARSE_RATIO",
            0.6,
            "INPUT.SIZE_TRAIN",
            (128, 64),
            "INPUT.SIZE_TEST",
            (128, 64),
        ],
    )
    got = [k for k, _, _ in config_changes(saved.dump(), now)]
    assert got == [
        "INPUT.SIZE_TEST",
        "INPUT.SIZE_TRAIN",
        "MODEL.SDTPS_SPARSE_RATIO",
        "SOLVER.MAX_EPOCHS",
    ]
