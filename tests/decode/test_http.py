"""Tests for analyzer.decode.http: requests, block-page style responses, prefixes, hostile
input and the HTTP traffic of the public 1kxun capture."""
from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path
from typing import Iterator, Optional

import dpkt
import pytest

from analyzer.decode.http import (
    HttpRequest,
    looks_like_http_request,
    parse_http_request,
    parse_http_response,
)

CAPTURES = Path(__file__).resolve().parents[2].parent / "shared" / "captures-public"

REQUEST = (
    b"GET /search?q=falun HTTP/1.1\r\n"
    b"Host: www.Example.com\r\n"
    b"User-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\n"
    b"\r\n"
)

BLOCKPAGE = (
    b"HTTP/1.1 403 Forbidden\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 38\r\n"
    b"\r\n"
    b"<html><body>Access denied</body></html>"
)


def test_request() -> None:
    req = parse_http_request(REQUEST)
    assert req == HttpRequest(
        method="GET",
        target="/search?q=falun",
        version="HTTP/1.1",
        host="www.Example.com",
        headers=(
            ("Host", "www.Example.com"),
            ("User-Agent", "curl/8.5.0"),
            ("Accept", "*/*"),
        ),
        headers_complete=True,
    )
    assert req.header("user-agent") == "curl/8.5.0"
    assert req.header("missing") is None


@pytest.mark.parametrize("name", [b"host", b"HOST", b"hOsT"])
def test_host_name_case_insensitive_value_exact(name: bytes) -> None:
    req = parse_http_request(b"GET / HTTP/1.0\r\n" + name + b":  BlOcKeD.example:8080 \t\r\n\r\n")
    assert req is not None and req.host == "BlOcKeD.example:8080"


def test_first_host_wins_and_missing_host() -> None:
    req = parse_http_request(b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n")
    assert req is not None and req.host == "a.example"
    req = parse_http_request(b"GET http://c.example/ HTTP/1.1\r\nAccept: */*\r\n\r\n")
    assert req is not None and req.host is None and req.target == "http://c.example/"


def test_prefix_without_final_crlfcrlf() -> None:
    req = parse_http_request(b"POST /x HTTP/1.1\r\nHost: partial.example\r\nContent-Le")
    assert req is not None
    assert req.method == "POST" and req.host == "partial.example"
    assert req.headers_complete is False
    # The Host line itself cut short: not returned (it could be a truncated name).
    req = parse_http_request(b"GET / HTTP/1.1\r\nHost: partial.exa")
    assert req is not None and req.host is None
    # Request line incomplete: nothing to say yet.
    assert parse_http_request(b"GET /index.html HTTP/1.") is None


def test_bare_lf_and_obs_fold() -> None:
    req = parse_http_request(b"GET / HTTP/1.1\nX-Long: a\n  b\nHost: lf.example\n\n")
    assert req is not None
    assert req.host == "lf.example"
    assert req.header("x-long") == "a b"
    assert req.headers_complete


def test_non_ascii_host_is_escaped() -> None:
    req = parse_http_request(b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9.example\r\n\r\n")
    assert req is not None and req.host == "caf\\xc3\\xa9.example"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"GET /\r\n",  # HTTP/0.9 style, no version
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET / HTTP/x.y\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b" / HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",  # a response is not a request
    ],
)
def test_not_a_request(data: bytes) -> None:
    assert parse_http_request(data) is None


def test_looks_like_http_request() -> None:
    assert looks_like_http_request(b"GET / HTTP/1.1")
    assert looks_like_http_request(b"CONNECT example.com:443 HTTP/1.1")
    assert not looks_like_http_request(b"CONNECT")  # the method must be followed by SP
    assert not looks_like_http_request(b"\x16\x03\x01")
    assert not looks_like_http_request(b"")
    assert not looks_like_http_request(b"A" * 100)


def test_response_blockpage() -> None:
    resp = parse_http_response(BLOCKPAGE)
    assert resp is not None
    assert resp.version == "HTTP/1.1" and resp.status == 403 and resp.reason == "Forbidden"
    assert resp.header("content-length") == "38"
    assert resp.headers[0] == ("Content-Type", "text/html; charset=utf-8")
    assert resp.body_prefix == b"<html><body>Access denied</body></html>"
    assert resp.headers_complete


def test_response_variants() -> None:
    resp = parse_http_response(b"HTTP/1.0 200\nServer: x\n\nbody")
    assert resp is not None and resp.status == 200 and resp.reason == ""
    assert resp.body_prefix == b"body"
    resp = parse_http_response(b"HTTP/1.1 302 Found\r\nLocation: http://warning.example/\r\n")
    assert resp is not None and resp.header("location") == "http://warning.example/"
    assert resp.body_prefix == b"" and not resp.headers_complete
    resp = parse_http_response(b"HTTP/1.1 451 Unavailable For Legal Reasons\r\n\r\n")
    assert resp is not None and resp.status == 451
    assert resp.reason == "Unavailable For Legal Reasons"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"HTTP/1.1 200 OK",  # status line not finished
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/11 200 OK\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x00" * 50,
    ],
)
def test_not_a_response(data: bytes) -> None:
    assert parse_http_response(data) is None


def test_every_prefix_never_raises() -> None:
    for data in (REQUEST, BLOCKPAGE):
        for i in range(len(data) + 1):
            parse_http_request(data[:i])
            parse_http_response(data[:i])
            looks_like_http_request(data[:i])
    for i in range(len(REQUEST)):
        req = parse_http_request(REQUEST[:i])
        assert req is None or req.host in (None, "www.Example.com")


def test_random_and_mutated_input_never_raises() -> None:
    rng = random.Random(1996)
    for i in range(3000):
        data = rng.randbytes(rng.randrange(0, 400))
        if i % 3 == 1:
            data = b"GET / HTTP/1.1\r\n" + data
        elif i % 3 == 2:
            mutated = bytearray(REQUEST if i % 2 else BLOCKPAGE)
            for _ in range(rng.randrange(1, 5)):
                mutated[rng.randrange(len(mutated))] = rng.choice(b"\r\n: \x00\xffA")
            data = bytes(mutated)
        parse_http_request(data)
        parse_http_response(data)
        looks_like_http_request(data)


def test_many_header_lines_are_bounded() -> None:
    data = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 100000 + b"Host: late.example\r\n\r\n"
    req = parse_http_request(data)
    assert req is not None and len(req.headers) <= 256


# --- Public capture ------------------------------------------------------------------------

KXUN = "ntop__nDPI__tests__cfgs__default__pcap__1kxun.pcap"


def _capture(name: str) -> Path:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"public capture {name} not available")
    return path


def first_payloads(path: Path) -> Iterator[bytes]:
    """The first payload-bearing TCP segment of every connection and direction."""
    seen: set[tuple[bytes, int, bytes, int]] = set()
    with path.open("rb") as fh:
        for _, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                continue
            tcp = ip.data
            if not isinstance(tcp, dpkt.tcp.TCP) or not tcp.data:
                continue
            key = (bytes(ip.src), tcp.sport, bytes(ip.dst), tcp.dport)
            if key in seen:
                continue
            seen.add(key)
            yield bytes(tcp.data)


def tshark_field(path: Path, display_filter: str, field: str) -> Optional[set[str]]:
    tshark = shutil.which("tshark")
    if tshark is None:
        return None
    res = subprocess.run(
        [tshark, "-r", str(path), "-Y", display_filter, "-T", "fields", "-e", field],
        capture_output=True, text=True, timeout=120, check=False,
    )
    return {line for line in res.stdout.splitlines() if line}


@pytest.mark.public
def test_capture_1kxun_requests_and_responses() -> None:
    path = _capture(KXUN)
    requests = []
    responses = []
    for payload in first_payloads(path):
        req = parse_http_request(payload)
        if req is not None:
            requests.append(req)
        resp = parse_http_response(payload)
        if resp is not None:
            responses.append(resp)
    hosts = {r.host for r in requests}
    assert {"pic.1kxun.com", "mangaweb.1kxun.mobi", "kankan.1kxun.com"} <= hosts
    assert "218.244.135.170:9099" in hosts  # IP literal with port, kept as sent
    assert {r.method for r in requests} <= {"GET", "POST"}
    # tshark lists these codes; 206 (frame 582) it only shows as a segment of a reassembled PDU.
    assert {r.status for r in responses} <= {100, 101, 200, 204, 206, 301, 302, 404, 500, 502}
    assert len(responses) > 10
    expected_hosts = tshark_field(path, "http.request && tcp", "http.host")
    if expected_hosts is not None:
        assert {h for h in hosts if h is not None} <= expected_hosts
