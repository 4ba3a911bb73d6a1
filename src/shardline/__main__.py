"""``python -m shardline``: the ``shardline`` command (``shardline.cli:main``), for where the script is not on PATH."""

import sys

from .cli import main

sys.exit(main())
