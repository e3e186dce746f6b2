"""datafree.io.runlog: the bookkeeping every loop shares (metrics lines, the best weights, the last weights), and the
teacher's loop writing through it like the others."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import tiny_config


class FakeAccelerator:
    """Only what RunLog reads: which process this is, unwrap, and the trackers' log."""

    def __init__(self, main: bool):
        self.is_main_process, self.logged = main, []

    def unwrap_model(self, module):
        return module

    def log(self, values, step):
        self.logged.append((step, values))


def test_lines_best_and_weights(tmp_path):
    from safetensors.torch import load_file

    from datafree.io.runlog import Best, RunLog

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 99}\n')  # an earlier run's line
    acc = FakeAccelerator(main=True)
    log = RunLog(tmp_path / "run", acc, fresh=True)
    assert not log.metrics_path.exists()  # started over
    log.write({"step": 1, "s_total": 0.5, "note": "text"}, track=True)
    log.write({"step": 2, "s_total": 0.25})
    lines = [json.loads(l) for l in log.metrics_path.read_text().splitlines()]
    assert lines == [{"step": 1, "s_total": 0.5, "note": "text"}, {"step": 2, "s_total": 0.25}]
    assert acc.logged == [(1, {"step": 1, "s_total": 0.5})]  # numbers only, and only when tracked
    best, saved = Best(), []
    assert log.keep_best(0.5, 10, best, lambda: saved.append(10)) and (best.best_acc, best.best_step) == (0.5, 10)
    assert not log.keep_best(0.5, 20, best, lambda: saved.append(20))  # a tie is not a new best
    assert not log.keep_best(0.4, 30, best, lambda: saved.append(30))
    assert log.keep_best(0.6, 40, best, lambda: saved.append(40)) and saved == [10, 40] and best.best_step == 40
    net = torch.nn.Linear(3, 2)
    path = log.save_weights(net, "sub/w.safetensors", {"step": "40"})
    assert torch.equal(load_file(path)["weight"], net.weight.detach())


def test_other_processes_write_nothing(tmp_path):
    from datafree.io.runlog import Best, RunLog

    log = RunLog(tmp_path / "run", FakeAccelerator(main=False), fresh=True)
    log.write({"step": 1})
    path = log.save_weights(torch.nn.Linear(2, 2), "w.safetensors")
    assert not log.metrics_path.exists() and not path.exists() and not (tmp_path / "run").exists()
    best = SimpleNamespace(best_acc=-1.0, best_step=-1)  # the trainer's progress: any object with the two fields
    assert log.keep_best(0.3, 5, best, lambda: None) and best.best_step == 5 and Best().best_acc == -1.0


@pytest.mark.e2e
def test_the_teacher_loop_writes_its_metrics_lines_through_the_run_log(tmp_path):
    from datafree.supervised import train_teacher

    config = tiny_config(tmp_path, teacher_training={"epochs": 2, "batch_size": 64})
    result = train_teacher(config)
    folder = tmp_path  # teacher.checkpoint = tmp_path / teacher.safetensors
    lines = [json.loads(l) for l in (folder / "teacher_metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2] and [l["step"] for l in lines] == [4, 8]  # 256 images / 64
    assert [l["test_acc"] for l in lines] == [h["test_acc"] for h in result["history"]]
    assert all(l["train_loss"] > 0 for l in lines) and lines[1]["time_s"] >= lines[0]["time_s"]
    assert (folder / "route" / "epoch_002.safetensors").exists() and (folder / "teacher.safetensors").exists()
    train_teacher(config)  # trained again into the same folder: the lines start over
    assert len((folder / "teacher_metrics.jsonl").read_text().splitlines()) == 2
