"""``python -m datafree.cli.export --run <run dir>``: a finished run's synthetic data (see datafree/ship/export.py)."""

from __future__ import annotations

import argparse
import json
import sys

from datafree.io.checkpoint import CheckpointError
from datafree.ship.export import __doc__ as FORMAT_DOC
from datafree.ship.export import export_synthetic


def main(argv: list[str] | None = None) -> int:
    """CLI entry: export, or a one-line error and exit code 2 for a bad run folder or arguments."""
    parser = argparse.ArgumentParser(description=FORMAT_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished run folder (or a benchmark folder: its seed_0)")
    parser.add_argument("--n", type=int, default=50000, help="number of images (default 50000)")
    parser.add_argument("--out", default=None, help="output folder (default <run>/synthetic)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent codes")
    parser.add_argument("--batch-size", type=int, default=None, help="generator batch (default: the run's train.batch_size)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export in --out")
    args = parser.parse_args(argv)
    try:
        out = export_synthetic(args.run, args.n, args.out, args.seed, args.batch_size, args.overwrite)
    except (CheckpointError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    counts = json.loads((out / "export.json").read_text())["class_counts"]
    print(f"wrote {args.n} images to {out} (class counts {counts})")
    print(f"train a student from it: python train_dfl.py --config <recipe> --from-export {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
