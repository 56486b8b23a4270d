"""Compare an analyzer JSON document (``analyzer analyze -f json``) with lab ground truth.

Rules (see captures/README.md):

* every expected verdict must be matched by one verdict with the same ``technique``,
  ``trigger``, ``target``, ``server`` (ip:port) and client IP (the client's port is not
  compared); when the truth entry has ``match_domain`` the ``domain`` must match as well
  (case-insensitive, trailing dot ignored);
* benign scenarios (no expected verdicts) must produce no verdict at all;
* in the other scenarios, a verdict whose (technique, server) pair matches no expected
  verdict is a false positive (e.g. a verdict on the server that still worked).
"""
from __future__ import annotations

from typing import Any


def _ip_of(endpoint: str | None) -> str | None:
    if not endpoint:
        return None
    endpoint = str(endpoint)
    if endpoint.startswith("["):
        return endpoint[1:].split("]", 1)[0]
    if endpoint.count(":") == 1:
        return endpoint.split(":", 1)[0]
    return endpoint


def _norm_domain(d: str | None) -> str | None:
    return d.lower().rstrip(".") if d else None


def _describe(v: dict[str, Any]) -> str:
    return (f"{v.get('technique')}/{v.get('trigger')}/{v.get('target')} "
            f"{v.get('client')} -> {v.get('server')} domain={v.get('domain')}")


def matches(v: dict[str, Any], e: dict[str, Any]) -> list[str]:
    """Mismatching fields of verdict ``v`` against expected entry ``e`` (empty: match)."""
    bad = []
    for k in ("technique", "trigger", "target"):
        if v.get(k) != e.get(k):
            bad.append(k)
    if str(v.get("server")) != str(e.get("server")):
        bad.append("server")
    if _ip_of(v.get("client")) != _ip_of(e.get("client")):
        bad.append("client")
    if e.get("match_domain") and _norm_domain(v.get("domain")) != _norm_domain(e.get("domain")):
        bad.append("domain")
    return bad


def check(doc: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """Problems found comparing analyzer output ``doc`` with ``truth`` (empty: all good)."""
    problems: list[str] = []
    if not isinstance(doc, dict) or "verdicts" not in doc:
        return ["analyzer output has no 'verdicts' list"]
    verdicts = [v for v in doc.get("verdicts") or [] if isinstance(v, dict)]
    expected = truth.get("expected_verdicts") or []
    name = truth.get("scenario", "?")
    if not expected:
        for v in verdicts:
            problems.append(f"{name}: benign scenario but got verdict {_describe(v)}")
        return problems
    for e in expected:
        if any(not matches(v, e) for v in verdicts):
            continue
        near = sorted(verdicts, key=lambda v: len(matches(v, e)))
        hint = ""
        if near:
            hint = (f"; closest: {_describe(near[0])} (differs in "
                    f"{', '.join(matches(near[0], e))})")
        problems.append(f"{name}: missing verdict {_describe(e)}{hint}")
    allowed = {(e.get("technique"), str(e.get("server"))) for e in expected}
    for v in verdicts:
        if (v.get("technique"), str(v.get("server"))) not in allowed:
            problems.append(f"{name}: unexpected verdict {_describe(v)}")
    return problems
