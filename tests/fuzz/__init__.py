"""Fuzzing lossdsl: generators of valid specs with independent NumPy references
(:mod:`tests.fuzz.specgen`), mutated and random text (:mod:`tests.fuzz.textgen`), the checks
every case must pass (:mod:`tests.fuzz.harness`) and the long-run script (``run_fuzz.py``)."""
