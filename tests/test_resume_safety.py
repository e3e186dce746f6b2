"""A run folder is untrusted input: resume unpickles nothing that could run code, and fails clearly and early."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest

from datafree.io.checkpoint import CheckpointError
from datafree.pipeline import distill_from_config
from tests.conftest import save_random_teacher, tiny_config


class Payload:
    """Unpickling this creates a folder: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def finished_run(tmp_path):
    config = tiny_config(tmp_path, train={"ema_decay": 0.5, "student_steps": 2, "replay": 2})
    save_random_teacher(config)
    distill_from_config(config)
    return config


def _reset_accelerate():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.mark.slow
def test_a_planted_pickle_in_any_file_a_resume_reads_runs_nothing_and_names_the_file(finished_run, tmp_path):
    out = tmp_path / "run"
    step = out / "checkpoints" / "step_0000006"
    pickled = sorted(p.name for p in step.iterdir() if p.suffix in {".bin", ".pkl"})
    assert {"optimizer.bin", "random_states_0.pkl"} <= set(pickled)  # what Accelerate itself writes
    assert not [p for p in step.iterdir() if p.name.startswith("custom_checkpoint")]  # nothing of ours is pickled
    pristine = tmp_path / "pristine"
    shutil.copytree(step, pristine)
    config_before = (out / "config.json").read_text()
    for name in pickled:
        shutil.rmtree(step)
        shutil.copytree(pristine, step)
        marker = tmp_path / f"ran_{name}"
        with open(step / name, "wb") as fh:
            pickle.dump(Payload(str(marker)), fh)
        _reset_accelerate()
        with pytest.raises(CheckpointError, match=f"{name}.*never unpickles"):
            distill_from_config(finished_run, resume=True)
        assert not marker.exists(), f"code in {name} ran"
        assert (out / "config.json").read_text() == config_before  # nothing rewritten by the failed resume


@pytest.mark.slow
def test_latest_may_not_point_outside_the_checkpoints_folder(finished_run, tmp_path):
    latest = tmp_path / "run" / "checkpoints" / "LATEST"
    for target in (str(tmp_path / "run" / "checkpoints" / "step_0000006"), "../../elsewhere", "step_1"):
        latest.write_text(json.dumps({"dir": target}))
        _reset_accelerate()
        with pytest.raises(CheckpointError, match="not a step_NNNNNNN folder"):
            distill_from_config(finished_run, resume=True)


@pytest.mark.slow
def test_damaged_or_missing_training_state_is_a_clear_error(finished_run, tmp_path):
    step = tmp_path / "run" / "checkpoints" / "step_0000006"
    (step / "train_state_0.json").write_text('{"state": {"progress"')  # torn
    _reset_accelerate()
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        distill_from_config(finished_run, resume=True)
    (step / "train_state_0.json").unlink()
    _reset_accelerate()
    with pytest.raises(CheckpointError, match="not a complete datafree checkpoint"):
        distill_from_config(finished_run, resume=True)


@pytest.mark.slow
def test_a_changed_network_is_refused_before_anything_is_written(finished_run, tmp_path):
    import dataclasses

    out = tmp_path / "run"
    before = (out / "config.json").read_text()
    wider = dataclasses.replace(finished_run, generator=dataclasses.replace(finished_run.generator, width=32))
    _reset_accelerate()
    with pytest.raises(CheckpointError, match="does not load into this run's networks"):
        distill_from_config(wider, resume=True)
    assert (out / "config.json").read_text() == before


@pytest.mark.slow
def test_a_torn_last_metrics_line_is_dropped_on_resume(finished_run, tmp_path, capsys):
    metrics = tmp_path / "run" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])  # power loss mid-write
    latest = tmp_path / "run" / "checkpoints" / "LATEST"
    latest.write_text(json.dumps({"dir": "step_0000003"}))  # the earlier of the two kept checkpoints
    _reset_accelerate()
    distill_from_config(finished_run, resume=True)
    assert "incomplete" in capsys.readouterr().out
    assert [json.loads(l)["step"] for l in metrics.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_a_fresh_run_into_an_earlier_runs_folder_is_refused_unless_overwrite(finished_run, tmp_path):
    import dataclasses

    from datafree.config import ConfigError

    out = tmp_path / "run"
    before = {p.name for p in (out / "checkpoints").iterdir()}
    _reset_accelerate()
    with pytest.raises(ConfigError, match="earlier run's checkpoints.*--resume.*overwrite"):
        distill_from_config(finished_run)
    assert {p.name for p in (out / "checkpoints").iterdir()} == before  # nothing of the earlier run was deleted
    again = dataclasses.replace(finished_run, train=dataclasses.replace(finished_run.train, overwrite=True, steps=2,
                                                                        checkpoint_every=2, eval_every=2))  # fmt: skip
    _reset_accelerate()
    distill_from_config(again)
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"LATEST", "step_0000002"}  # only this run's
    _reset_accelerate()
    distill_from_config(again, resume=True)  # and it resumes (the old "number of custom checkpoints" failure)
    (tmp_path / "afile").write_text("x")
    file_out = dataclasses.replace(again, train=dataclasses.replace(again.train, output_dir=str(tmp_path / "afile")))
    with pytest.raises(ConfigError, match="is a file"):
        distill_from_config(file_out)
