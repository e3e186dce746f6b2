"""``python -m datafree <subcommand>`` and ``accelerate launch -m datafree <subcommand>``: the ``datafree`` command."""

import sys

from datafree.cli.main import main

sys.exit(main())
