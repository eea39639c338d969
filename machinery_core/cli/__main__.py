"""`python -m machinery_core.cli`: the `machinery` command."""

from machinery_core.cli.command import main

main()
