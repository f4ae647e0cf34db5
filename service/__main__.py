"""`python -m service` is the `zpravodaj` command (used by the dev command for its worker)."""

import sys

from . import code_positions

if sys.argv[1:2] == ["worker"]:
    # Started again with -X no_debug_ranges before the CLI's imports, which would otherwise
    # run twice (code_positions.py); `with_worker_app` does it for the other ways in.
    code_positions.restart_without_columns()

from .cli import main

main()
