"""``python -m search`` runs the ``hpsearch`` command."""

from search.cli import main

main()
