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
            "TEST.MISSING_MODALITIES",
            ("RGB",),
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


def test_a_checkpoint_config_in_demo_names_compares_with_todays(old_names, caplog):
    """A checkpoint written before the renames stores DeMo's key names: they compare with
    today's keys, so an unchanged config resumes and a changed value under an old name stops."""
    import logging

    saved = old_names(load_config(None, ["OUTPUT_DIR", "a"]).dump())
    assert "WARMUP_ITERS: 10" in saved and "DIRECT: 1" in saved
    with caplog.at_level(logging.WARNING):
        assert config_changes(saved, load_config(None, ["OUTPUT_DIR", "b"]), "last.pth") == []
    assert "SOLVER.WARMUP_ITERS (from last.pth) is DeMo's name for SOLVER.WARMUP_EPOCHS" in (
        caplog.text
    )
    now = load_config(
        None,
        ["SOLVER.WARMUP_EPOCHS", 3, "MODEL.JOINT_ORI_HEAD", False, "INPUT.FLIP_PROB", 0.0],
    )
    assert config_changes(saved, now) == [
        ("INPUT.FLIP_PROB", 0.5, 0.0),
        ("MODEL.JOINT_ORI_HEAD", True, False),
        ("SOLVER.WARMUP_EPOCHS", 10, 3),
    ]


def test_resume_from_a_folder_in_demo_names(tmp_path, old_names):
    """--resume's choice in a run folder of the versions before the renames: config.yaml and the
    checkpoint's cfg in DeMo's names; the config read from that config.yaml resumes."""
    import torch

    from engine.run_dir import select_resume

    cfg = load_config(None, ["OUTPUT_DIR", str(tmp_path), "SOLVER.WARMUP_EPOCHS", 2])
    (tmp_path / "config.yaml").write_text(old_names(cfg.dump()))
    ckpt = {"model": {}, "optimizer": {}, "epoch": 1, "cfg": old_names(cfg.dump())}
    torch.save(ckpt, tmp_path / "last.pth")
    (tmp_path / "last_checkpoint").write_text("last.pth")
    again = load_config(str(tmp_path / "config.yaml"))
    assert again == cfg
    path, got = select_resume(again, allow_changes=False)
    assert path == str(tmp_path / "last.pth") and got["epoch"] == 1
    longer = load_config(str(tmp_path / "config.yaml"), ["SOLVER.WARMUP_EPOCHS", 5])
    with pytest.raises(RunDirError, match=r"SOLVER\.WARMUP_EPOCHS: 2 -> 5"):
        select_resume(longer, allow_changes=False)
