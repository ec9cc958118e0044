"""``python -m coretrack.cli``: the same as the ``coretrack`` command."""

from . import run

run()
