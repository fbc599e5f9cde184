"""`python -m gristmill.pipeline` is the `gristmill` command."""

from gristmill.pipeline.cli import main

main()
