"""The flow table in C (:mod:`analyzer._ctrack`), when the extension is built.

``analyzer/_ctrack.c`` mirrors :class:`~analyzer.track.flows.FlowTable` statement by statement
and decodes, itself, the frames it can take whole (plain IPv4/IPv6 TCP/UDP, not fragmented,
not DNS); every other frame goes to the pipeline's per-packet path in packet order. Finished
flows come back as the same :class:`~analyzer.track.flows.Flow` objects. The Python table
stays the reference (``Settings.reference``) and the fallback when the extension is missing or
``ANALYZER_PURE_PYTHON=1``; tests/core/test_fastpath.py checks that both give identical
result documents.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from analyzer.config import Settings
from analyzer.speedups import optional
from analyzer.track.flows import Direction, Flow

if TYPE_CHECKING:
    from analyzer._ctrack import Table

_ctrack = optional("_ctrack")

__all__ = ["available", "native_table"]


def available() -> bool:
    return _ctrack is not None


def native_table(settings: Settings) -> Optional["Table"]:
    """A C flow table for these settings, or None (reference or numpy path asked for, or
    not built)."""
    if settings.reference or not settings.native or _ctrack is None:
        return None
    table: Table = _ctrack.Table(
        flow_type=Flow, direction_type=Direction, max_events=settings.max_events,
        first_payloads=settings.first_payloads, limit_client=settings.first_payload_bytes,
        limit_server=settings.first_payload_bytes_server,
        linger=settings.thresholds.close_linger, idle_timeout=settings.idle_timeout,
        max_flows=settings.max_flows,
    )
    return table
