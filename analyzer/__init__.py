"""analyzer: packet-level interference analyzer.

Most modules may be installed twice: as Python source and compiled from that same source by
mypyc (setup.py). Python imports the compiled one when it is there. With the environment
variable ``ANALYZER_PURE_PYTHON=1`` every ``analyzer.*`` module is imported from its source
instead, and the C extensions are left unused (analyzer/speedups.py): the interpreted
reference, for comparison and debugging. This module itself is never compiled.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

__version__ = "0.1.0"

PURE_PYTHON_ENV = "ANALYZER_PURE_PYTHON"


class _SourceFirst:
    """A meta path finder: ``analyzer.*`` modules as ``.py`` source even where a compiled one
    sits beside. (Not an importlib.abc subclass: importing that costs 6 ms at every start.)"""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[ModuleType] = None) -> Optional["ModuleSpec"]:
        if not fullname.startswith(__name__ + ".") or path is None:
            return None
        import importlib.util

        leaf = fullname.rpartition(".")[2]
        for directory in path:
            package = os.path.join(directory, leaf, "__init__.py")
            if os.path.isfile(package):
                return importlib.util.spec_from_file_location(
                    fullname, package, submodule_search_locations=[os.path.dirname(package)])
            module = os.path.join(directory, leaf + ".py")
            if os.path.isfile(module):
                return importlib.util.spec_from_file_location(fullname, module)
        return None  # the C extensions (analyzer._ctrack, ...): no source, normal import


def data_text(name: str) -> str:
    """The text of a file shipped in ``analyzer/data``. Read beside this module, which is never
    compiled (importlib.resources would add 6 ms to every start)."""
    with open(os.path.join(os.path.dirname(__file__), "data", name), encoding="utf-8") as fh:
        return fh.read()


def compiled() -> bool:
    """Whether the analysis runs compiled by mypyc (checked on a module every run imports)."""
    from analyzer import pipeline

    return not (pipeline.__file__ or "").endswith(".py")


if os.environ.get(PURE_PYTHON_ENV) == "1" and not any(
        isinstance(f, _SourceFirst) for f in sys.meta_path):
    sys.meta_path.insert(0, _SourceFirst())
