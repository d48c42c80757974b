"""``python -m ratchet.cli``: the same as the ``ratchet`` command."""

from . import main

main()
