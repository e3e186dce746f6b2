"""`runs/bench_speed.py --quick` end to end in a subprocess: the recipe it says it measures, the table with one
row per mode, split shares that add up, and a parseable last line that agrees with the table. No timing asserts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import recorded

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| 16 \| (fp32|cl|bf16) \| (.*) \|$")


@pytest.fixture(scope="module")
def quick_dir(tmp_path_factory) -> Path:
    """Where the --quick run records its figures (x.json)."""
    return tmp_path_factory.mktemp("bench_speed")


@pytest.fixture(scope="module")
def quick(quick_dir) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "runs" / "bench_speed.py"), "--quick",
                          "--runtime.label_precision", "bf16", "--record", str(quick_dir / "x.json")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.strip().splitlines()


def cells(lines: list[str]) -> dict[str, list[str]]:
    """Mode -> the cells after ``| batch | mode |`` of its row at batch 16."""
    return {m.group(1): [c.strip() for c in m.group(2).split("|")] for m in map(ROW.match, lines) if m}


@pytest.mark.slow
def test_says_it_measures_the_current_recipe(quick):
    from datafree.config import load_toml

    config = load_toml(ROOT / "runs" / "fmnist.toml")
    g, t = config.generator, config.train
    recipe = next(l for l in quick if l.startswith("recipe: "))
    assert f"generator {g.arch} width {g.width} " in recipe, recipe
    pieces = " + ".join(f"{p.name}({', '.join(f'{k}={v}' for k, v in p.params.items())})" for p in config.batches)
    assert "fresh(size=64)" in pieces  # the default preset's fresh batches, which the line must name
    assert f"{t.student_steps} student steps per generator step on [[batches]] {pieces}" in recipe, recipe
    assert all(f"{term.name} {term.weight:g}" in recipe for term in config.synthesis), recipe
    assert "labels bf16" in recipe and f"labels {config.runtime.label_precision}" not in recipe, recipe  # the override
    title = next(l for l in quick if l.startswith("## "))
    assert f"generator width {g.width}, {t.student_steps} student steps" in title, title


def test_workers_measure_the_recipe_the_parent_resolved(tmp_path):
    """The parent writes the overridden recipe as JSON; a worker builds exactly that (not the TOML's values)."""
    import json
    import datafree.bench.speed_worker as bench
    from datafree.config import load_toml

    config = load_toml(ROOT / "runs" / "zoo.toml")
    config.teacher.arch, config.runtime.fold_batchnorm = "resnet20", False
    (tmp_path / "recipe.json").write_text(json.dumps(config.to_dict()))
    worker = bench.ModeBench("fp32", tmp_path / "recipe.json")
    base = worker.base
    Path(worker.out).rmdir()  # its scratch run folder, still empty
    assert base == config and base.teacher.arch == "resnet20" and not base.runtime.fold_batchnorm


def test_table_has_a_complete_row_per_mode(quick):
    header = "| batch | mode | img/s | x eager fp32 | ms/step | peak MB | gen / teacher / s-batches / s-updates % "
    assert any(l.startswith(header) for l in quick), "\n".join(quick)
    rows = cells(quick)
    assert list(rows) == ["fp32", "cl", "bf16"], "\n".join(quick)
    for mode, row in rows.items():
        if mode == "bf16" and row[0].startswith("failed"):
            continue  # fp32 and cl always run; bf16 may be unsupported here
        img_s, ratio, ms, peak, shares, cover, gflops = row
        assert float(img_s) > 0 and float(ratio) > 0 and float(ms) > 0 and float(cover) > 0 and float(gflops) > 0, row
        assert re.fullmatch(r"-?\d+", peak), row  # MB above the worker's baseline (Linux /proc or CUDA)
        parts = [int(p) for p in shares.split(" / ")]
        assert len(parts) == 4 and abs(sum(parts) - 100) <= 2, row  # four pieces, rounded shares of their sum
    assert rows["fp32"][1] == "1.00", rows["fp32"]
    flops = re.search(r"FLOPs of one train_step .*: batch 16: ([\d.]+) GFLOP", "\n".join(quick))
    assert flops and float(flops.group(1)) > 0, "\n".join(quick)


def test_last_line_is_the_best_ratio_of_the_table(quick):
    match = re.fullmatch(r"speedup_vs_eager_fp32: (\d+\.\d+)", quick[-1])
    assert match, quick[-1]
    ratios = {mode: row[1] for mode, row in cells(quick).items() if not row[0].startswith("failed")}
    assert float(match.group(1)) == max(float(r) for r in ratios.values()), (quick[-1], ratios)
    named = next(re.match(r"best at batch 16: ([\w+]+), \d+ img/s = ", l) for l in quick if l.startswith("best at"))
    assert named and ratios[named.group(1)] == match.group(1), (named, ratios)


def test_recorded_figures_are_the_tables(quick, quick_dir):
    """--record: every round's timing and the medians, ratios and best ratio the printed table and last line show."""
    data = recorded(quick_dir / "x.json", "bench_speed", quick_dir)
    assert (data["recipe_file"], data["overrides"]) == ("runs/fmnist.toml", {"runtime.label_precision": "bf16"})
    assert (data["batches"], data["reference_batch"], data["repeats"], data["iters"]) == ([16], 16, 1, 1)
    rows = {r["mode"]: r for r in data["rows"]}
    printed = cells(quick)
    assert list(rows) == list(printed) == ["fp32", "cl", "bf16"]
    assert rows["cl"]["settings"] == {"mixed_precision": "no", "channels_last": True, "compile": False}
    for mode, row in rows.items():
        if printed[mode][0].startswith("failed"):
            assert row["seconds_per_step"] == [] and row["error"] in printed[mode][0], row
            continue
        img_s, ratio, ms = printed[mode][:3]
        assert len(row["seconds_per_step"]) == 1 and row["median_seconds_per_step"] == row["seconds_per_step"][0]
        assert row["images_per_s"] == [row["images_per_step"] / t for t in row["seconds_per_step"]]
        assert (f"{row['median_images_per_s']:.0f}", f"{row['x_eager_fp32']:.2f}") == (img_s, ratio), (row, printed[mode])
        assert f"{1000 * row['median_seconds_per_step']:.1f}" == ms and set(row["split_s"]) == {
            "generator", "teacher", "student_batches", "student"}
    assert quick[-1] == f"speedup_vs_eager_fp32: {data['speedup_vs_eager_fp32']:.2f}"
    assert any(l.startswith(f"best at batch 16: {data['best_mode']}, ") for l in quick)
    assert data["step_flops"]["16"] > 0 and f"batch 16: {data['step_flops']['16'] / 1e9:.2f} GFLOP" in "\n".join(quick)
