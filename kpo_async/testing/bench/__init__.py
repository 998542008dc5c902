"""Benchmarks of the triggerer side of kpo-async (``kpo-async bench``); see docs/scale.md."""
