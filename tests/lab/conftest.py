"""Fixtures for the network-namespace lab (tests marked ``lab``)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .scenarios import ScenarioResult, ScenarioSkipped, run_scenario
from .topology import have_lab_prereqs


@pytest.fixture(scope="session")
def lab_scenario(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], ScenarioResult]:
    """Run a lab scenario (fresh namespaces) at most once per session; returns its result."""
    why = have_lab_prereqs()
    if why:
        pytest.skip(f"lab not available: {why}")
    out: Path = tmp_path_factory.mktemp("lab")
    cache: dict[str, ScenarioResult | BaseException] = {}

    def get(name: str) -> ScenarioResult:
        if name not in cache:
            try:
                cache[name] = run_scenario(name, out)
            except BaseException as exc:  # noqa: BLE001 - remembered, re-raised per test
                cache[name] = exc
        r = cache[name]
        if isinstance(r, ScenarioSkipped):
            pytest.skip(str(r))
        if isinstance(r, BaseException):
            raise r
        return r

    return get
