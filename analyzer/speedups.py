"""The optional C extension (:mod:`analyzer._speedups`), or ``None``.

``native`` is ``None`` when the extension was not built (no C compiler at install time) or when
the environment variable ``ANALYZER_PURE_PYTHON=1`` asks for the numpy code, which stays the
reference: both give identical results. Callers read ``speedups.native`` at call time, so tests
may also set it to ``None``.
"""
from __future__ import annotations

import os

__all__ = ["PURE_PYTHON_ENV", "native"]

PURE_PYTHON_ENV = "ANALYZER_PURE_PYTHON"

try:
    from analyzer import _speedups as native
except ImportError:  # built without a C compiler: the numpy code does the work
    native = None  # type: ignore[assignment]

if os.environ.get(PURE_PYTHON_ENV) == "1":
    native = None  # type: ignore[assignment]
