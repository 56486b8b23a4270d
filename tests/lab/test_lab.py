"""Real-stack censorship lab: run every scenario in fresh network namespaces, check the
capture shows what the ground truth says (lab self-check), then check that the analyzer
reports exactly the expected verdicts (``python -m analyzer analyze PCAP -f json``).

Needs root, iproute2, tcpdump, iptables (and dnsmasq/dig; openvpn and wireguard-go for the
VPN scenarios).  Run only these:  ``sudo python -m pytest -m lab tests/lab``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from .expect import check
from .sanity import check_pcap
from .scenarios import SCENARIOS, ScenarioResult
from .topology import REPO_ROOT, have_lab_prereqs

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(have_lab_prereqs() is not None,
                                 reason=f"lab needs root + ip/tcpdump/iptables "
                                        f"({have_lab_prereqs()})")]

NAMES = list(SCENARIOS)


def analyze(pcap: str) -> dict:
    cp = subprocess.run([sys.executable, "-m", "analyzer", "analyze", pcap, "-f", "json"],
                        capture_output=True, text=True, cwd=str(REPO_ROOT), timeout=180)
    assert cp.returncode == 0, f"analyzer failed ({cp.returncode}): {cp.stderr[-2000:]}"
    return json.loads(cp.stdout)


@pytest.mark.parametrize("name", NAMES)
def test_capture_matches_scenario(lab_scenario: Callable[[str], ScenarioResult],
                                  name: str) -> None:
    r = lab_scenario(name)
    problems = check_pcap(name, r.pcap)
    assert not problems, "\n".join(problems)
    assert r.truth["scenario"] == name
    assert r.truth["benign"] == (not r.truth["expected_verdicts"])


@pytest.mark.parametrize("name", NAMES)
def test_analyzer_reports_ground_truth(lab_scenario: Callable[[str], ScenarioResult],
                                       name: str) -> None:
    r = lab_scenario(name)
    doc = analyze(str(r.pcap))
    problems = check(doc, r.truth)
    assert not problems, "\n".join(problems)
