"""train_net.py --seeds: several runs one after another in one process, each exactly the run a
process of its own trains (records and weights), --resume over runs of which some are finished,
and the command lines it refuses."""

import json
import os

import pytest
import torch

import train_net

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(REPO, "configs", "_smoke")
TIMES = {"time", "seconds", "provenance", "triplets_per_s"}


def records(folder):
    """metrics.json without what depends on when and how fast it ran."""
    out = []
    for line in open(os.path.join(folder, "metrics.json")):
        r = json.loads(line)
        out.append({k: v for k, v in r.items() if k not in TIMES and not k.endswith("_s")})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("config", ["DeMo.yml", "DeMo_SDTPS.yml"])
def test_a_later_run_of_the_process_is_the_run_of_a_process_of_its_own(
    synthetic_root, tmp_path, config, fast
):
    schedule = fast(2)
    base = ["--config_file", os.path.join(SMOKE, config), "DATASETS.ROOT_DIR", synthetic_root]
    # the seeds before the overrides, as tools/compare.py puts them
    train_net.cli([*base, "--seeds", "3", "4", *schedule, "OUTPUT_DIR", str(tmp_path / "shared")])
    alone = tmp_path / "alone"
    train_net.cli([*base, *schedule, "OUTPUT_DIR", str(alone), "SOLVER.SEED", "4"])
    shared = tmp_path / "shared" / "seed_4"
    assert records(shared) == records(alone)
    got = torch.load(shared / "model_final.pth", weights_only=True)["model"]
    want = torch.load(alone / "model_final.pth", weights_only=True)["model"]
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    # each run has its own folder, config and log
    first = tmp_path / "shared" / "seed_3"
    assert (first / "model_final.pth").is_file() and records(first) != records(shared)
    assert "seed: 4" in (shared / "config.yaml").read_text()
    log = (shared / "log.txt").read_text()
    assert "run 2 of 2 in this process" in log and "seed 3," not in log

    # again with a third seed: the finished runs need --resume, which leaves them as they are
    again = [*base, "--seeds", "3", "4", "5", *schedule, "OUTPUT_DIR", str(tmp_path / "shared")]
    with pytest.raises(SystemExit):
        train_net.cli(again)
    assert not (tmp_path / "shared" / "seed_5").exists()
    before = records(first), records(shared)
    train_net.cli([*again, "--resume"])
    assert (records(first), records(shared)) == before
    assert (tmp_path / "shared" / "seed_5" / "model_final.pth").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "1", "2", "--eval-only"], "evaluate each run folder on its own"),
        (["--seeds", "1", "SOLVER.SEED", "3"], "remove SOLVER.SEED"),
        (["--seeds", "1", "1"], "give distinct seeds"),
        (["--seeds", "1", "-2"], "give distinct seeds >= 0"),
        (["--seeds", "SOLVER.MAX_EPOCHS", "2"], "give one or more integer seeds"),
    ],
)
def test_bad_seeds_are_refused(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_net.cli(
            ["--config_file", os.path.join(SMOKE, "DeMo.yml"), *argv, "OUTPUT_DIR", str(tmp_path)]
        )
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "seed_1").exists()


def test_seeds_under_torchrun_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit):
        train_net.cli(["--config_file", os.path.join(SMOKE, "DeMo.yml"), "--seeds", "1", "2"])
    assert "under torchrun give each seed its own command" in capsys.readouterr().err
