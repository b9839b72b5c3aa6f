"""``python -m autoreply`` runs the command line."""

from autoreply.cli import main

main()
