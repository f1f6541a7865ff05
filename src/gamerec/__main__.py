"""``python -m gamerec`` (and ``torchrun -m gamerec train``) runs the CLI."""

from gamerec.cli import main

main()
