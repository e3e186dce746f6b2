"""The teacher's record beside its checkpoint, as the benchmarks read it (datafree/supervised.py)."""

from __future__ import annotations

import json

import pytest

from datafree.config import ConfigError
from datafree.supervised import recorded_teacher_accuracy, teacher_record


def test_recorded_accuracy_is_read_from_the_record(tmp_path):
    checkpoint = tmp_path / "teacher.safetensors"
    (tmp_path / "teacher.json").write_text(json.dumps({"teacher_acc": 0.8418, "epochs": 3}))
    assert recorded_teacher_accuracy(checkpoint) == pytest.approx(0.8418)
    assert teacher_record(checkpoint)["epochs"] == 3


@pytest.mark.parametrize("text", [None, "{not json", "[0.9]", '{"epochs": 3}', '{"teacher_acc": "0.9"}',
                                  '{"teacher_acc": 91.5}', '{"teacher_acc": true}'])  # fmt: skip
def test_a_missing_or_broken_record_is_a_clear_error(tmp_path, text):
    checkpoint = tmp_path / "teacher.safetensors"
    if text is not None:
        (tmp_path / "teacher.json").write_text(text)
    with pytest.raises(ConfigError) as error:
        recorded_teacher_accuracy(checkpoint)
    message = str(error.value)
    assert str(tmp_path / "teacher.json") in message and "teacher_acc" in message and "delete that folder" in message
