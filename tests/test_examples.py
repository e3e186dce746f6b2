"""runs/examples/: each example runs end to end on generated stand-in data (--smoke)."""

from __future__ import annotations

import pytest


@pytest.mark.e2e
def test_own_teacher_example_distills_a_user_module_with_its_recorded_statistics(tmp_path, capsys):
    import runs.examples.own_teacher as example

    assert example.main(["--smoke", "--output-root", str(tmp_path / "run")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("teacher 0.") and "student 0." in line
    assert "passed" in line  # it read the statistics it was given (results["uses"])
    assert (tmp_path / "run" / "student_last.safetensors").exists() and (tmp_path / "run" / "MODEL_CARD.md").exists()
