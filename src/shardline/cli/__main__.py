"""``python -m shardline.cli``: the ``shardline`` command."""

import sys

from . import main

sys.exit(main())
