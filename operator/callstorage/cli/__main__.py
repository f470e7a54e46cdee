"""``python -m callstorage.cli``: the ``callstorage`` command."""

import sys

from callstorage.cli import main

sys.exit(main())
