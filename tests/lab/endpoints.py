"""Real endpoints for the lab (run inside namespaces with ``python -m tests.lab.endpoints``).

Sub-commands::

    servers    --tls-ports 443,5222 --http-ports 80 --cert C --key K [--linger0]
               TLS (python ssl, self-signed test PKI) and plain HTTP servers on 0.0.0.0;
               answer one HTTP/1.1 request per connection. --linger0: abortive close
               (SO_LINGER 0 -> the kernel sends a genuine RST).
    tls        --host IP --port P --sni NAME   TLS client (verification off), GET /
    http       --host IP --port P --hostname NAME  plain HTTP client
    quic       --host IP --port P --sni NAME   crafted QUIC v1 Initial(s) (own encryptor)
    wg-init    --host IP --port P              crafted 148-byte WireGuard initiation (fallback)
    ovpn-reset --host IP --port P              crafted OpenVPN hard reset (fallback)

Clients print one JSON line with the outcome, including the local port.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
from typing import Any


def _emit(d: dict[str, Any]) -> None:
    print(json.dumps(d), flush=True)


# ------------------------------------------------------------------------- servers

def _read_request(conn: Any, limit: int = 65536) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < limit:
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def _handle(conn: socket.socket, ctx: ssl.SSLContext | None, linger0: bool,
            body_bytes: int) -> None:
    s: Any = conn
    try:
        conn.settimeout(10)
        if ctx is not None:
            s = ctx.wrap_socket(conn, server_side=True)
        req = _read_request(s)
        if not req:
            return
        size = body_bytes
        for line in req.split(b"\r\n"):
            if line.lower().startswith(b"x-size:"):
                size = int(line.split(b":", 1)[1])
        body = (b"anlab " * (size // 6 + 1))[:size]
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        if linger0:
            # abortive close: the kernel sends a RST instead of a FIN (and no close_notify)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            return
        if ctx is not None:
            try:
                s = s.unwrap()
            except (OSError, ValueError):
                pass
        try:
            s.shutdown(socket.SHUT_WR)
            s.settimeout(2)
            while s.recv(4096):
                pass
        except OSError:
            pass
    except (OSError, ssl.SSLError, ValueError):
        pass
    finally:
        for sock in (s, conn):
            try:
                sock.close()
            except OSError:
                pass


def _listen(port: int, ctx: ssl.SSLContext | None, linger0: bool, body: int) -> None:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(64)

    def loop() -> None:
        while True:
            c, _a = ls.accept()
            threading.Thread(target=_handle, args=(c, ctx, linger0, body), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def cmd_servers(a: argparse.Namespace) -> int:
    ctx = None
    if a.tls_ports:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
    for p in [int(x) for x in a.tls_ports.split(",") if x]:
        _listen(p, ctx, a.linger0, a.body)
    for p in [int(x) for x in a.http_ports.split(",") if x]:
        _listen(p, None, a.linger0, a.body)
    print("READY", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


# ------------------------------------------------------------------------- clients

def _tcp_connect(host: str, port: int, timeout: float) -> tuple[socket.socket, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("0.0.0.0", 0))
    lport = s.getsockname()[1]
    s.settimeout(timeout)
    s.connect((host, port))
    return s, lport


def _http_exchange(s: Any, hostname: str, size: int) -> tuple[int, bytes]:
    s.sendall(f"GET / HTTP/1.1\r\nHost: {hostname}\r\nUser-Agent: anlab/1\r\nX-Size: {size}\r\n"
              f"Connection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    status = 0
    if data.startswith(b"HTTP/1."):
        try:
            status = int(data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            pass
    return status, data


def _client(a: argparse.Namespace, use_tls: bool) -> int:
    res: dict[str, Any] = {"proto": "tls" if use_tls else "http", "server": f"{a.host}:{a.port}",
                           "name": a.sni if use_tls else a.hostname}
    t0 = time.monotonic()
    lport = None
    try:
        raw, lport = _tcp_connect(a.host, a.port, a.timeout)
        res["local_port"] = lport
        s: Any = raw
        if use_tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(raw, server_hostname=a.sni)
            res["tls_version"] = s.version()
        status, data = _http_exchange(s, a.sni if use_tls else a.hostname, a.size)
        res.update(ok=status == 200, status=status, bytes=len(data))
        if status != 200:
            res["body"] = data[-200:].decode("latin-1")
        try:
            s.close()
        except OSError:
            pass
    except Exception as exc:  # noqa: BLE001 - report every failure
        res.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        if lport is not None:
            res["local_port"] = lport
        elif "local_port" not in res:
            pass
    res["seconds"] = round(time.monotonic() - t0, 3)
    _emit(res)
    return 0


def cmd_tls(a: argparse.Namespace) -> int:
    return _client(a, True)


def cmd_http(a: argparse.Namespace) -> int:
    return _client(a, False)


def cmd_quic(a: argparse.Namespace) -> int:
    from .quic import build_client_hello, build_initial

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    lport = s.getsockname()[1]
    dcid, scid = os.urandom(8), os.urandom(8)
    hello = build_client_hello(a.sni, scid=scid)  # retransmissions carry the same ClientHello
    sent, got = 0, None
    t0 = time.monotonic()
    wait = a.first_timeout
    while time.monotonic() - t0 < a.timeout:
        s.sendto(build_initial(a.sni, dcid=dcid, scid=scid, pn=sent, client_hello=hello),
                 (a.host, a.port))
        sent += 1
        s.settimeout(min(wait, max(0.05, a.timeout - (time.monotonic() - t0))))
        try:
            got = s.recv(65535)
            break
        except TimeoutError:
            wait *= 2
    _emit({"proto": "quic", "server": f"{a.host}:{a.port}", "name": a.sni, "local_port": lport,
           "initials_sent": sent, "ok": got is not None, "dcid": dcid.hex()})
    return 0


def cmd_wg_init(a: argparse.Namespace) -> int:
    """Structure-correct WireGuard handshake initiation (random crypto fields)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    sender = os.urandom(4)
    for i in range(a.count):
        msg = b"\x01\x00\x00\x00" + sender + os.urandom(32 + 48 + 28 + 16) + b"\x00" * 16
        assert len(msg) == 148
        s.sendto(msg, (a.host, a.port))
        if i + 1 < a.count:
            time.sleep(a.interval)
    _emit({"proto": "wireguard-crafted", "server": f"{a.host}:{a.port}",
           "local_port": s.getsockname()[1], "sent": a.count})
    return 0


def cmd_ovpn_reset(a: argparse.Namespace) -> int:
    """OpenVPN P_CONTROL_HARD_RESET_CLIENT_V2 (no tls-auth): opcode 7 / key 0, session id,
    empty ack array, message packet-id 0."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    sid = os.urandom(8)
    for i in range(a.count):
        s.sendto(b"\x38" + sid + b"\x00" + struct.pack("!I", 0), (a.host, a.port))
        if i + 1 < a.count:
            time.sleep(a.interval)
    _emit({"proto": "openvpn-crafted", "server": f"{a.host}:{a.port}",
           "local_port": s.getsockname()[1], "sent": a.count})
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tests.lab.endpoints")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("servers")
    p.add_argument("--tls-ports", default="")
    p.add_argument("--http-ports", default="")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--linger0", action="store_true")
    p.add_argument("--body", type=int, default=2048)
    p.set_defaults(fn=cmd_servers)
    for name, fn in (("tls", cmd_tls), ("http", cmd_http)):
        p = sub.add_parser(name)
        p.add_argument("--host", required=True)
        p.add_argument("--port", type=int, default=443 if name == "tls" else 80)
        p.add_argument("--sni", default="g.whatsapp.net")
        p.add_argument("--hostname", default="www.whatsapp.com")
        p.add_argument("--timeout", type=float, default=5.0)
        p.add_argument("--size", type=int, default=2048)
        p.set_defaults(fn=fn)
    p = sub.add_parser("quic")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--sni", default="g.whatsapp.net")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--first-timeout", type=float, default=0.5)
    p.set_defaults(fn=cmd_quic)
    for name, fn, port in (("wg-init", cmd_wg_init, 51820), ("ovpn-reset", cmd_ovpn_reset, 1194)):
        p = sub.add_parser(name)
        p.add_argument("--host", required=True)
        p.add_argument("--port", type=int, default=port)
        p.add_argument("--count", type=int, default=3)
        p.add_argument("--interval", type=float, default=2.0)
        p.set_defaults(fn=fn)
    a = ap.parse_args(argv)
    return int(a.fn(a))


if __name__ == "__main__":
    sys.exit(main())
