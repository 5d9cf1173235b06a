"""``python -m reluflow``: the ``reluflow`` command."""
from .cli import main

main()
