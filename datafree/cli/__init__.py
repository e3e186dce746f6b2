"""Command-line programs of the library (the entry layer): ``python -m datafree.cli.<name> --help``."""
