"""Escaping of attacker-controlled strings (escape.py)."""
from __future__ import annotations

import pytest

from analyzer.report.escape import csv_safe, markdown_safe, terminal_safe


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("g.whatsapp.net", "g.whatsapp.net"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("a\nb\r\tc\x00", "a\\x0ab\\x0d\\x09c\\x00"),
        ("\x7f\x85\x9b", "\\x7f\\x85\\x9b"),  # DEL, NEL, C1 CSI
        ("evil\u202egnp.exe", "evil\\u202egnp.exe"),
        ("\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069", "\\u202a\\u202b\\u202c\\u202d"
         "\\u2066\\u2067\\u2068\\u2069"),
        ("\u200f\u061c\u2028", "\\u200f\\u061c\\u2028"),
        ("\ud800", "\\ud800"),  # lone surrogate: would crash a UTF-8 writer
        ("müller.example — 日本", "müller.example — 日本"),  # printable non-ASCII is kept
    ],
)
def test_terminal_safe(raw: str, expected: str) -> None:
    assert terminal_safe(raw) == expected
    terminal_safe(raw).encode("utf-8")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
        ("+1", "'+1"),
        ("-cmd", "'-cmd"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("  =1+1", "'  =1+1"),
        ("\n @x", "'\n @x"),
        ("a=b", "a=b"),
        ("", ""),
        ("g.whatsapp.net", "g.whatsapp.net"),
    ],
)
def test_csv_safe(raw: str, expected: str) -> None:
    assert csv_safe(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a|b", "a\\|b"),
        ("`x` *y* _z_", "\\`x\\` \\*y\\* \\_z\\_"),
        ("[l](http://x)", "\\[l\\](http://x)"),
        ("<script>", "\\<script\\>"),
        ("# h", "\\# h"),
        ("a\nb", "a\\\\x0ab"),  # a visible escape, escaped for Markdown
        ("back\\slash", "back\\\\slash"),
        ("&lt;", "\\&lt;"),
        ("ok.example", "ok.example"),
    ],
)
def test_markdown_safe(raw: str, expected: str) -> None:
    assert markdown_safe(raw) == expected
    assert "\n" not in markdown_safe(raw)


def test_streamed_flow_text_equals_the_indenting_encoder() -> None:
    # write_json formats flows with the C scalar encoder; it must equal json.dumps(indent=2)
    from analyzer.pipeline import FlowRecord
    from analyzer.report.document import _flow_text, _nested, flow_dict

    hostile = 'é\u2028"x\\\x00\x1b[31m</script>\ud800'
    for rec in (
        FlowRecord("f0-1", 0, "tcp", "10.0.0.1:1", "[::1]:443", "whatsapp", None, hostile, 1, 2,
                   1.5, 1e20, "ok"),
        FlowRecord("f3-9", 3, "udp", hostile, "b", "none", hostile, None, 0, 0, 0.0, 3.0, "failed"),
    ):
        assert _flow_text(rec) == _nested(flow_dict(rec), 2)


def test_time_stamp_text_equals_rounding_then_dumps() -> None:
    import json
    import random
    import struct

    from analyzer.report.document import _ts, _ts_text

    rnd = random.Random(7)
    values = [0.0, -0.0, 1e-9, -1e-9, 5e-5, 1e-4, 0.0001234567, 0.1, 0.5, 1.0, 1.5, 2.0000005,
              1700000001.0, 1700000001.1234565, 1700000016.535459, 2.0 ** 33 - 1e-6, 2.0 ** 33,
              8.6e9, 1e16, 1e20, 123456.0000005, -1700000001.25, float("nan"), float("inf")]
    values += [rnd.uniform(1.6e9, 1.8e9) for _ in range(20000)]
    values += [rnd.uniform(0, 1000) for _ in range(20000)]
    values += [10 ** rnd.uniform(-6, 12) * rnd.choice((1, -1)) for _ in range(20000)]
    values += [struct.unpack("<d", rnd.randbytes(8))[0] for _ in range(5000)]
    # capture time stamps (whole microseconds or nanoseconds) and half-microsecond ties
    values += [rnd.randrange(1_500_000_000, 2_200_000_000) + rnd.randrange(1_000_000) / 1e6
               for _ in range(20000)]
    values += [rnd.randrange(1_500_000_000, 2_200_000_000) + rnd.randrange(10 ** 9) / 1e9
               for _ in range(20000)]
    values += [rnd.randrange(0, 2_200_000_000) + (rnd.randrange(1_000_000) + 0.5) / 1e6
               for _ in range(20000)]
    values += [1e-4 * 1.0000001, 0.000999, 2.0 ** 51 / 1e6, 2.0 ** 51 / 1e6 - 1e-6, 2251799813.6853,
               2251799813.685248, 2251799813.6852475]
    for v in values:
        assert repr(_ts(v)) == repr(round(v, 6)), repr(v)
        assert _ts_text(v) == json.dumps(_ts(v), ensure_ascii=False), repr(v)


def test_streamed_verdict_text_equals_the_indenting_encoder() -> None:
    from analyzer.model import Evidence, LadderPacket, Target, Technique, Trigger, Verdict
    from analyzer.report.document import _nested, _verdict_text, verdict_dict

    hostile = 'é\u2028"x\\\x00\x1b[31m</script>\ud800'
    ladder = (LadderPacket(1, 1700000001.5, "c2s", hostile),
              LadderPacket(2, 1700000001.123457, "s2c", "RST", 3, "R", 64, 0, 1, 2, 3, 0, True),
              LadderPacket(3, 1e-5, "s2c", "x", 0, None, None, None, 2**40, None, 0, 7, False))
    for lad in (ladder, ()):
        v = Verdict("v-1", Technique.RST_INJECTION, Trigger.SNI, Target.WHATSAPP, "tcp", "a:1", "b:2",
                    hostile, 0.9, 1.0, 2.0, ("ttl_mismatch",),
                    (Evidence(1, 1.0, hostile),), "rst_injection", (hostile,), (), "f0-1", lad)
        assert _verdict_text(v) == _nested(verdict_dict(v), 2)


def test_scalar_text_equals_json_dumps() -> None:
    import json

    from analyzer.report.document import _scalar

    for v in ('a\u2028\x00"é\ud800\\', "", 0, -5, 10**30, 1.5, 1e20, 1e-7, 0.1 + 0.2,
              1700000016.535459, float("nan"), float("inf"), -float("inf"), None, True, False):
        assert _scalar(v) == json.dumps(v, ensure_ascii=False), repr(v)


def test_indented_text_equals_the_indenting_encoder() -> None:
    from analyzer.report.document import _indented, _nested

    hostile = 'é\u2028"x\\\x00\x1b[31m</script>\ud800'
    cases = [{}, [], (), {"a": []}, {"a": {}}, [[[]]], {"k": (1, 2)}, {1: 2}, {"x": float("nan")},
             {"a": [1, 2.5, None, True, False, hostile], "b": {"c": [{"d": []}], hostile: -0.0}},
             [{"a": 1}, {"b": [{"c": None}]}], hostile, 5, 1e300]
    for c in cases:
        for level in (0, 1, 2, 3):
            assert _indented(c, level) == _nested(c, level), (c, level)
