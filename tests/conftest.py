"""Shared fixtures: the example specs, a private compile cache, JAX in float64."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "examples"
SPECS = ROOT / "specs"


def pytest_configure(config: pytest.Config) -> None:
    # Each test session compiles into its own cache: tests never read a stale user cache.
    if "LOSSDSL_CACHE_DIR" not in os.environ:
        cache = getattr(config, "cache", None)
        folder = cache.mkdir("lossdsl_cache") if cache else tempfile.mkdtemp(prefix="lossdsl-")
        os.environ["LOSSDSL_CACHE_DIR"] = str(folder)
    try:
        import jax
    except ImportError:
        return
    jax.config.update("jax_enable_x64", True)


@pytest.fixture
def examples() -> Path:
    return EXAMPLES
