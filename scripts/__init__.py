"""Developer scripts that are not part of ``make test`` (see ``scripts/chaos.py``)."""
