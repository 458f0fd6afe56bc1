"""Benchmarks of the conversation pipeline; run them as ``python -m bench.<name>`` (see README)."""
