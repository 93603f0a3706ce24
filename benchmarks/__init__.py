"""Benchmarks of lossdsl against hand-written losses: ``python -m benchmarks --help``.

- ``run.py``: the runner (time and peak memory ratios, markdown and JSON);
- ``worker.py``: one measurement per process; ``report.py``: aggregation and markdown;
- ``references.py``: the hand-written torch and JAX losses; ``cases.py``: shapes and inputs;
- ``compile_time.py``: spec -> callable time, cold and warm.

See docs/performance.md for the method and the latest results.
"""
