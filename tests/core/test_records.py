"""The hot records that spell out their ``__init__`` (see HOT_RECORDS in analyzer/model.py).

A written-out ``__init__`` is a second list of the fields: it must take every field, in the
dataclass's order, with the dataclass's defaults, and set each one. Checked on the source
(any value may be passed to an interpreted __init__, not to a compiled one): when the
package runs compiled, this file runs again in a subprocess with ANALYZER_PURE_PYTHON=1.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

import analyzer

PACKAGE = Path(analyzer.__file__).resolve().parent
# every module that holds one (a new one must be listed here: the test below counts them)
MODULES = ["model", "decode/dns", "track/dns", "track/facts", "pipeline"]


PURE = os.environ.get(analyzer.PURE_PYTHON_ENV) == "1"
source_only = pytest.mark.skipif(not PURE, reason="runs on the source (see the test below)")


def _written_out() -> Iterator[type]:
    if not PURE:
        return
    for rel in MODULES:
        mod = importlib.import_module("analyzer." + rel.replace("/", "."))
        for obj in vars(mod).values():
            if (isinstance(obj, type) and obj.__module__ == mod.__name__
                    and dataclasses.is_dataclass(obj) and not obj.__dataclass_params__.init):  # type: ignore[attr-defined]
                yield obj


def test_on_the_source() -> None:
    if PURE:
        pytest.skip("this is the source run")
    env = dict(os.environ, **{analyzer.PURE_PYTHON_ENV: "1"})
    r = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
                       capture_output=True, text=True, env=env, cwd=PACKAGE.parent)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


RECORDS = list(_written_out())


@source_only
def test_every_hot_record_is_checked() -> None:
    names = {c.__name__ for c in RECORDS}
    assert names >= {"Evidence", "LadderPacket", "FlowFacts", "Identification", "Finding",
                     "DnsQuestion", "SoaData", "DnsRR", "Edns", "DnsMessage", "DnsQuery",
                     "DnsResponse", "DnsTransaction", "FlowInfo", "FlowRecord"}


@source_only
@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_written_out_init_matches_the_fields(cls: type) -> None:
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields):
        assert p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, f.name
        if f.default is dataclasses.MISSING:
            assert p.default is inspect.Parameter.empty, f.name
        else:
            assert p.default == f.default and type(p.default) is type(f.default), f.name
    # each argument lands in its own field
    marks: list[Any] = [object() for _ in fields]
    obj = cls(*marks)
    assert [getattr(obj, f.name) for f in fields] == marks
    # and a frozen record stays frozen
    if cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, fields[0].name, None)
