"""Benchmarks of the callstorage operator against a local test bed (``python -m bench``).

The run starts its own control plane and S3 emulator, measures the operator (a fresh
subprocess per run) against a plain asyncio script doing the minimum work on the same API
server and emulator, and prints one JSON document on stdout. See ``bench/README.md``.
"""
