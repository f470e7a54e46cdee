"""``python -m callstorage`` runs the operator."""

import sys

from callstorage.runner import main

sys.exit(main())
