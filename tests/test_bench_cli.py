"""`datafree bench`: the shipped benchmarks by name, one argument helper shared with runs/, and runs/ scripts that
stand on the installed package (no sys.path edits, no script importing another)."""

from __future__ import annotations

import ast
import json

import pytest

from tests.conftest import ROOT


def test_bench_lists_its_benchmarks_and_refuses_an_unknown_one(capsys):
    from datafree.cli.main import main

    with pytest.raises(SystemExit) as done:
        main(["bench", "--help"])
    assert done.value.code == 0
    listing = capsys.readouterr().out
    assert "zoo " in listing and "speed " in listing
    assert main(["bench", "no_such"]) == 2
    assert "unknown benchmark 'no_such'" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "bench " in capsys.readouterr().out  # listed among the subcommands


def test_an_override_of_a_key_the_benchmark_sets_itself_is_refused_naming_its_option(tmp_path, capsys):
    from datafree.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "zoo", "--smoke", "--train.seed", "3", "--output-root", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--train.seed is set by this program's --seeds / --first-seed" in err and "datafree bench zoo" in err
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_a_missing_recipe_is_one_line_naming_the_shipped_ones(tmp_path):
    from datafree.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "zoo", "--smoke", "--recipe", "no_such_recipe", "--output-root", str(tmp_path)])
    assert "no_such_recipe" in str(exit_.value.code) and "zoo" in str(exit_.value.code)


@pytest.mark.e2e
def test_bench_zoo_from_the_cli_names_itself_in_the_table_and_the_record(tmp_path):
    from datafree.cli.main import main

    record = tmp_path / "zoo.json"
    args = ["bench", "zoo", "--smoke", "--seeds", "1", "--pairs", "lenet5:lenet5_half", "--output-root", str(tmp_path / "z"),
            "--record", str(record), "--synthesis.onehot", "2"]  # fmt: skip
    assert main(args) == 0
    table = (tmp_path / "z" / "table.md").read_text()
    assert "`datafree bench zoo --smoke --seeds 1" in table
    data = json.loads(record.read_text())
    assert data["provenance"]["command"].startswith("datafree bench zoo --smoke")
    saved = json.loads((tmp_path / "z" / "lenet5-lenet5_half" / "seed_0" / "config.json").read_text())
    assert next(t["weight"] for t in saved["synthesis"] if t["name"] == "onehot") == 2.0  # the override reached the run


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_runs_scripts_stand_on_the_package():
    """No script in runs/ edits sys.path or imports another script: what they share lives in datafree.bench."""
    scripts = sorted((ROOT / "runs").rglob("*.py"))
    assert len(scripts) >= 15
    for script in scripts:
        text = script.read_text()
        assert "sys.path.insert" not in text and "sys.path.append" not in text, script.name
        assert not [m for m in _imports(script) if m == "runs" or m.startswith("runs.")], script.name


def test_recipe_taking_scripts_spell_the_recipe_the_same_way():
    """Every runs/ script that reads a recipe takes --recipe (the old --config still accepted) from the helper."""
    from datafree.bench.args import bench_parser

    parser = bench_parser("doc", recipe="zoo", seeds=2, output_root="out")
    args = parser.parse_args(["--config", "fmnist"])
    assert (args.recipe, args.seeds, args.output_root, args.smoke, args.record) == ("fmnist", 2, "out", False, "")
    takers = [s for s in (ROOT / "runs").rglob("*.py") if '"--recipe"' in s.read_text() or '"--config"' in s.read_text()]
    assert not takers, [s.name for s in takers]  # none builds its own recipe option
