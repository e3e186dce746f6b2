"""runs/bench_image_size.py: one default-preset step per image size, the generator chosen by size, figures recorded."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT


@pytest.mark.e2e
def test_each_size_is_measured_in_its_own_process_with_the_generator_auto_picks(tmp_path, monkeypatch, capsys):
    import runs.bench_image_size as bench
    from datafree.io import results

    monkeypatch.setattr(results, "results_path", lambda name, repo: tmp_path / f"{name}.json")
    argv = ["--sizes", "32,64", "--batch", "4", "--classes", "12", "--teacher", "resnet8_narrow", "--student",
            "resnet8_narrow", "--record", "sizes"]  # fmt: skip
    assert bench.main(argv) == 0
    rows = json.loads((tmp_path / "sizes.json").read_text())["rows"]
    assert [r["image_size"] for r in rows] == [32, 64]
    assert [r["generator"] for r in rows] == ["DAFLGenerator", "DAFLGenerator x2"]  # auto: above 32 px, at half size
    assert all(r["step_s"] > 0 and r["peak_mb"] > 0 and r["images_per_step"] > 4 for r in rows)
    assert "| 64 | DAFLGenerator x2" in capsys.readouterr().out
    assert (ROOT / "runs" / "bench_image_size.py").exists()
