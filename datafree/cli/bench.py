"""``datafree bench <name>``: the benchmarks that ship with the package.

    datafree bench zoo --part tuned --seeds 3 --minutes 10     # the zoo of teacher -> student pairs
    datafree bench speed --recipe fmnist --batch-sizes 64,256  # images/s of the step by precision / layout / compile

``datafree bench <name> --help`` prints its options. The research scripts of a checkout (``runs/``) take the same
shared options (``--recipe``, ``--seeds``, ``--output-root``, ``--smoke``, ``--record``, ``--section.key``).
"""

from __future__ import annotations

import importlib
import sys

# name -> (module with main(argv, prog), one line for the listing)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "zoo": ("datafree.bench.zoo", "one recipe on every teacher -> student pair of the zoo (tuned and held-out parts)"),
    "speed": ("datafree.bench.speed", "images/s, peak memory and the step's split by precision, layout, compile mode"),
}


def usage() -> str:
    lines = ["usage: datafree bench <name> [options]", "", "benchmarks:"]
    lines += [f"  {name:7s} {line}" for name, (_, line) in BENCHMARKS.items()]
    return "\n".join([*lines, "", "datafree bench <name> --help: its options"])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        raise SystemExit(0)  # as every other subcommand's --help (argparse) ends
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"error: unknown benchmark {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[name][0])
    saved, sys.argv = sys.argv, [f"datafree bench {name}", *rest]  # its --help and errors name it
    try:
        return int(module.main(rest, prog=f"datafree bench {name}") or 0)
    finally:
        sys.argv = saved
