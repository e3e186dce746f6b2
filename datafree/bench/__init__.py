"""Benchmarks that ship with the package (``datafree bench <name>``) and the helpers every measuring script shares.

- :mod:`datafree.bench.args`: one argument helper (``--recipe``, ``--seeds``, ``--output-root``, ``--smoke``,
  ``--record``, ``--section.key``) for ``datafree bench`` and the research scripts in ``runs/``;
- :mod:`datafree.bench.common`: teachers trained once for a benchmark, a recipe at fixed steps, a finished run folder
  loaded again, how a table states a figure and its provenance;
- :mod:`datafree.bench.zoo`: the zoo of teacher -> student pairs (``datafree bench zoo``, ``runs/bench_teachers.py``);
  :mod:`datafree.bench.zoo_record` keeps its runs in ``results/``, :mod:`datafree.bench.zoo_tables` renders its
  tables and checks each pair against the targets (``runs/tables.py``);
- :mod:`datafree.bench.speed`: images per second of the real step by precision, layout and compile mode
  (``datafree bench speed``, ``runs/bench_speed.py``).

This package sits at the top of the import layers with :mod:`datafree.cli` (it drives whole runs); nothing in the
library imports it.
"""
