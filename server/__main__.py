"""``python -m server`` is the ``routine`` command (used where the console script is not on PATH)."""

from server.cli import main

main()
