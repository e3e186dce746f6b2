"""results.json is written by datafree.io.checkpoint.readable_json: the same JSON value, lists of numbers on one line."""

from __future__ import annotations

import json

from datafree.io.checkpoint import readable_json


def test_the_same_value_as_json_dumps_with_number_lists_inline():
    value = {"confusion": {"teacher": [[5, 0, 1], [2, 7, 0], [0, 0, 9]]}, "class_acc": [0.5, None, 1.25e-7],
             "names": ["[1,2]", "a, b"], "mixed": [True, 1, "x"], "empty": {"list": [], "dict": {}}, "n": 3,
             "nested": [{"h": [-1, 2.5]}], "text": "line\nbreak"}  # fmt: skip
    text = readable_json(value)
    assert json.loads(text) == value  # strings holding brackets or commas are left alone
    lines = text.splitlines()
    assert '      [5, 0, 1],' in lines and '  "class_acc": [0.5, null, 1.25e-07],' in lines
    assert '    "[1,2]",' in lines  # a list of strings keeps one item per line, as json.dumps(indent=2) would
    assert '    true,' in lines  # booleans are not numbers here: a mixed list stays one item per line


def test_a_100_class_matrix_takes_100_lines_not_10000():
    matrix = [[i * 100 + j for j in range(100)] for i in range(100)]
    text = readable_json({"confusion": matrix})
    assert len(text.splitlines()) == 104 and json.loads(text) == {"confusion": matrix}
    assert len(json.dumps({"confusion": matrix}, indent=2).splitlines()) > 10_000
