"""datafree.io.results: a benchmark's figures written with what made them, and refused when they are not such a file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from datafree.io import results


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.mark.e2e
def test_commit_marks_changed_tracked_files_but_not_results(tmp_path):
    assert results.commit_of(tmp_path) == "unknown"  # not a checkout
    git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x.json").write_text("{}")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "one")
    head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True).stdout.strip()
    assert results.commit_of(tmp_path) == head
    (tmp_path / "results" / "x.json").write_text('{"a": 1}')  # what a benchmark is writing
    (tmp_path / "README.md").write_text("the tables it regenerates\n")
    git(tmp_path, "add", "README.md")
    git(tmp_path, "commit", "-qm", "two")
    head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / "README.md").write_text("edited\n")
    assert results.commit_of(tmp_path) == head
    (tmp_path / "code.py").write_text("a = 2\n")
    assert results.commit_of(tmp_path) == head + "-dirty"


def test_record_writes_table_with_provenance(tmp_path):
    path = results.record(tmp_path / "r" / "t.json", {"rows": [{"final": 0.5}]}, tmp_path, ["runs/x.py", "--a", "1"])
    data = results.load(path)
    assert data["rows"] == [{"final": 0.5}]
    p = data["provenance"]
    assert p["command"] == "python runs/x.py --a 1" and p["commit"] == "unknown" and len(p["date"]) == 10
    assert p["hardware"]["threads"] == torch.get_num_threads()
    assert p["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_results_path_and_bad_files(tmp_path):
    assert results.results_path("zoo", tmp_path) == tmp_path / "results" / "zoo.json"
    assert results.results_path(str(tmp_path / "a.json"), Path("/elsewhere")) == tmp_path / "a.json"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable results file"):
        results.load(tmp_path / "bad.json")
    (tmp_path / "bare.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="no 'provenance' block"):
        results.load(tmp_path / "bare.json")
