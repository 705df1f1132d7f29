"""``python -m snnlab`` is the ``snnlab`` command."""

from .cli import app

app()
