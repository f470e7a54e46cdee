"""``PYTHONPATH=hack python -m bench``: run the benchmarks, print one JSON document."""

from bench.run import main

raise SystemExit(main())
