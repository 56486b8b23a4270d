"""The optional C extensions, each loaded by :func:`optional`, or ``None``.

An extension is ``None`` when it was not built (no C compiler at install time) or when the
environment variable ``ANALYZER_PURE_PYTHON=1`` asks for the Python/numpy code, which stays
the reference: both give identical results. ``native`` is :mod:`analyzer._speedups` (record
scan, header gather); callers read ``speedups.native`` at call time, so tests may also set it
to ``None``. The flow table (:mod:`analyzer.track.ctable`) and the DNS parser
(:mod:`analyzer.decode.dns`) load theirs the same way.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, Optional

from analyzer import PURE_PYTHON_ENV  # (defined with the source-first import switch)

__all__ = ["PURE_PYTHON_ENV", "native", "optional"]


def optional(name: str) -> Optional[ModuleType]:
    """``analyzer.<name>``, or None when it is not built or Python is asked for."""
    if os.environ.get(PURE_PYTHON_ENV) == "1":
        return None
    try:
        return importlib.import_module(f"analyzer.{name}")
    except ImportError:  # built without a C compiler: the Python code does the work
        return None


native: Any = optional("_speedups")
