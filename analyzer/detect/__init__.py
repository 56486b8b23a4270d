"""Detectors: one module per technique; each turns a finished flow into findings.

Every module opens with its censor model, signals, thresholds and known false positives.
The registry below is the order in which flow detectors run (residual blocking runs first in
the pipeline: a flow punished for an earlier one is not judged again on its own). DNS
injection works on DNS transactions (:mod:`analyzer.detect.dns_injection`).
"""
from __future__ import annotations

from typing import Callable

from analyzer.detect import blockpage, drop, icmp, rst_injection, throttling
from analyzer.detect.context import Context
from analyzer.model import Finding
from analyzer.track.facts import FlowInfo
from analyzer.track.flows import Flow

FlowDetector = Callable[[Flow, FlowInfo, Context], list[Finding]]

FLOW_DETECTORS: tuple[FlowDetector, ...] = (
    rst_injection.detect,
    blockpage.detect,
    icmp.detect,
    drop.detect,
    throttling.detect,
)
