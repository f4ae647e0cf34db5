"""`python -m service` is the `zpravodaj` command (used by the dev command for its worker)."""

from .cli import main

main()
