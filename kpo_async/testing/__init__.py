"""The workshop: the embedded cluster, the demo, the benchmark and the soak tool.

Shipped in the wheel so that ``kpo-async sim|demo|bench`` work from an install, but never imported
by the runtime (what a worker or a triggerer imports): ``make lint`` enforces that boundary.
"""
