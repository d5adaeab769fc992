"""``python -m srl``: the ``srl`` command (how ``torchrun ... -m srl train`` starts workers)."""

import sys

from .cli import main

sys.exit(main())
