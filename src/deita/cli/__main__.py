"""`python -m deita.cli` runs the `deita` command (as `accelerate launch -m deita.cli` does)."""

from deita.cli.app import main

main()
