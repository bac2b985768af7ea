"""metrics.json lines and TensorBoard event files."""

import json
import os

from utils.events import EventWriter


def test_writes_json_lines_with_provenance_and_tensorboard(tmp_path):
    w = EventWriter(str(tmp_path), {"git_commit": "abc", "seed": 1})
    w.write({"type": "eval", "results": {"1": {"mAP": 50.0}}}, {"test/mAP": 50.0}, step=3)
    w.write({"type": "train", "loss": float("nan")}, {"train/loss": float("nan")}, step=4)
    w.close()
    lines = [json.loads(x) for x in open(tmp_path / "metrics.json")]
    assert [x["type"] for x in lines] == ["eval", "train"]
    assert lines[0]["provenance"] == {"git_commit": "abc", "seed": 1}
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path))
