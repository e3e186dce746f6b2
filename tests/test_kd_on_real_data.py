"""runs/examples/kd_on_real_data.py (the real-data KD baseline) runs through the library's public pieces."""

from __future__ import annotations

import pytest

from tests.conftest import save_random_teacher, tiny_config


@pytest.mark.e2e
def test_kd_on_real_data_trains_and_reports_accuracy(tmp_path, capsys):
    import runs.examples.kd_on_real_data as script

    config = tiny_config(tmp_path, train={"batch_size": 8})
    save_random_teacher(config)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
[data]
name = "fake"
like = "fashion-mnist"
fake_size = 64
root = "{tmp_path / 'data'}"
[teacher]
checkpoint = "{config.teacher_checkpoint}"
[train]
batch_size = 8
""")
    assert script.main(["--config", str(recipe), "--steps", "2", "--output-dir", str(tmp_path / "run")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("KD on real images, 2 steps of 8: student accuracy on the real test set 0.")
    assert not (tmp_path / "run" / "generator.safetensors").exists()  # no generator in the loop
