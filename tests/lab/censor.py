"""On-path GFW-like censor for the lab; runs inside the router namespace.

Forwarded IPv4 packets are sent to NFQUEUE by an iptables rule; this process reads them
(pure-Python netlink client, :mod:`nfqueue`), decides per packet (accept / drop / hold for
a delay) and injects forged packets with a raw socket (IP_HDRINCL), like an on-path
injector that sees the traffic but whose forged packets race the genuine ones.

Behaviours (per scenario, from a JSON :class:`CensorConfig`):

* ``rst``        forged TCP RST / RST+ACK to client and/or server after a matching TLS
                 ClientHello SNI / HTTP Host (configurable TTL, IP-ID, window, flags,
                 sequence offsets such as +0/+1460/+4380); the trigger itself passes
                 (on-path) unless ``pass_trigger`` is false.
* ``drop``       drop the trigger (ClientHello, QUIC Initial, HTTP request, VPN handshake
                 fingerprint, any packet to/from a blackholed address) and every later
                 packet of that flow for ``drop_flow_seconds``.
* ``dns_inject`` forged DNS A answer (GFW-pool address) to the client; the query passes
                 and the genuine answer is held ``real_answer_delay_ms`` so it loses the race.
* ``blockpage``  drop the HTTP request, inject an HTTP 403 page (+FIN) to the client and a
                 RST to the server.
* ``throttle``   after a matching ClientHello, police the flow's server->client packets
                 with a token bucket (``rate_kbps``, ``burst_bytes``); excess is dropped,
                 like the 2021 Twitter throttling in Russia.
* residual state: after a trigger, new TCP SYNs from the same client to the same
  server:port within ``residual_seconds`` get a forged RST/ACK (or are dropped).
* link emulation: ``delay_ms`` hold for every forwarded packet and ``loss`` share dropped
  with a seeded RNG (deterministic for a given packet order).

Usage: ``python -m tests.lab.censor CONFIG.json`` (prints ``READY`` once the queue is bound;
SIGTERM/SIGINT to stop; actions are logged as JSON lines to ``log_path``).
"""
from __future__ import annotations

import heapq
import ipaddress
import json
import random
import re
import select
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .pkt import (
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    IPv4,
    build_dns_a_answer,
    build_tcp,
    build_udp,
    http_host,
    parse_dns_query,
    parse_ipv4,
    tls_client_hello_sni,
)

# Addresses seen in real GFW forged DNS answers (documented in the DNS-injection
# literature, e.g. "The Great DNS Wall" / GFWatch); used here only as forged A records.
GFW_FORGED_POOL = ["8.7.198.45", "59.24.3.173", "46.82.174.68", "93.46.8.89",
                   "203.98.7.65", "243.185.187.39", "78.16.49.15"]


@dataclass
class RstSpec:
    to: str = "client"          # "client" | "server"
    flags: str = "RA"           # "R" | "RA"
    seq_offset: int = 0         # added to the expected sequence number (+0/+1460/+4380)
    ttl: int = 103
    ipid: int | None = None  # None: random from the seeded RNG
    window: int = 0


@dataclass
class Rule:
    name: str
    match: str                  # sni | quic_sni | http_host | dns_name | ip | openvpn | wireguard
    action: str                 # rst | drop | dns_inject | blockpage | throttle
    pattern: str = ""           # regex, full match, case-insensitive (names)
    addrs: list[str] = field(default_factory=list)   # server addresses/CIDRs (ip rule / filter)
    ports: list[int] = field(default_factory=list)   # server ports (empty: any)
    rst: list[RstSpec] = field(default_factory=list)
    pass_trigger: bool = True
    drop_flow_seconds: float = 0.0
    residual_seconds: float = 0.0
    residual_action: str = "rst"  # rst | drop
    residual_rst: RstSpec = field(default_factory=lambda: RstSpec(flags="RA", ttl=103))
    forged_addrs: list[str] = field(default_factory=lambda: ["8.7.198.45"])
    dns_ttl: int = 60           # TTL inside the forged DNS record
    ip_ttl: int = 101           # IP TTL of forged DNS answers / blockpages
    ip_id: int | None = None
    real_answer_delay_ms: float = 0.0
    rate_kbps: float = 0.0      # throttle: policer rate for server->client packets
    burst_bytes: int = 16384    # throttle: policer bucket size
    blockpage: str = ("<html><head><title>403 Forbidden</title></head><body>"
                      "<h1>Access to this site is restricted</h1></body></html>")


@dataclass
class CensorConfig:
    rules: list[Rule] = field(default_factory=list)
    seed: int = 1
    loss: float = 0.0           # share of forwarded packets dropped (link emulation)
    delay_ms: float = 0.0       # hold every forwarded packet this long (link emulation)
    loss_skip_syn: bool = False  # never drop SYN/SYN-ACK (keeps handshakes quick)
    queue_num: int = 0
    log_path: str = "censor.jsonl"

    @staticmethod
    def from_dict(d: dict[str, Any]) -> CensorConfig:
        d = dict(d)
        rules = []
        for r in d.pop("rules", []):
            r = dict(r)
            r["rst"] = [RstSpec(**s) for s in r.get("rst", [])]
            if "residual_rst" in r:
                r["residual_rst"] = RstSpec(**r["residual_rst"])
            rules.append(Rule(**r))
        return CensorConfig(rules=rules, **d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Flow:
    __slots__ = (
        "blocked_until",
        "client",
        "client_next",
        "cport",
        "hold_from_server_ms",
        "police_burst",
        "police_rate",
        "proto",
        "residual_hit",
        "server",
        "server_next",
        "sport",
        "tokens",
        "tokens_ts",
        "triggered",
    )

    def __init__(self, proto: int, client: str, cport: int, server: str, sport: int) -> None:
        self.proto, self.client, self.cport, self.server, self.sport = (proto, client, cport,
                                                                         server, sport)
        self.client_next: int | None = None
        self.server_next: int | None = None
        self.blocked_until = 0.0
        self.hold_from_server_ms = 0.0
        self.triggered: list[str] = []
        self.residual_hit = False
        self.police_rate = 0.0  # bytes per second, 0: not policed
        self.police_burst = 0.0
        self.tokens = 0.0
        self.tokens_ts = 0.0

    def desc(self) -> str:
        return f"{'tcp' if self.proto == 6 else 'udp'} {self.client}:{self.cport} > {self.server}:{self.sport}"


def _seq_add(a: int, b: int) -> int:
    return (a + b) & 0xFFFFFFFF


class Censor:
    def __init__(self, cfg: CensorConfig, send: Any = None, clock: Any = time.monotonic) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.loss_rng = random.Random(cfg.seed * 7919 + 1)
        self.flows: dict[tuple[Any, ...], Flow] = {}
        self.residual: dict[tuple[Any, ...], tuple[float, Rule]] = {}
        self.send = send or (lambda pkt, dst: None)
        self.clock = clock
        self.events: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self._nets = {id(r): [ipaddress.ip_network(a, strict=False) for a in r.addrs]
                      for r in cfg.rules}
        self._res = {id(r): re.compile(r.pattern, re.IGNORECASE) if r.pattern else None for r in cfg.rules}

    # ------------------------------------------------------------------ helpers
    def log(self, event: str, flow: Flow | None = None, **kw: Any) -> None:
        ev = {"ts": round(time.time(), 6), "event": event}
        if flow is not None:
            ev["flow"] = flow.desc()
        ev.update(kw)
        self.events.append(ev)
        self.counts[event] = self.counts.get(event, 0) + 1

    def _ipid(self, v: int | None) -> int:
        return v if v is not None else self.rng.randint(1, 65535)

    def _rule_applies(self, r: Rule, flow: Flow) -> bool:
        if r.ports and flow.sport not in r.ports:
            return False
        nets = self._nets[id(r)]
        if nets and not any(ipaddress.ip_address(flow.server) in n for n in nets):
            return False
        return True

    def _name_match(self, r: Rule, name: str | None) -> bool:
        rx = self._res[id(r)]
        return bool(name) and rx is not None and rx.fullmatch(name) is not None

    def _flow(self, ip: IPv4, now: float) -> tuple[Flow, bool]:
        """Flow for this packet and whether the packet goes client->server."""
        fwd = (ip.proto, ip.src, ip.sport, ip.dst, ip.dport)
        rev = (ip.proto, ip.dst, ip.dport, ip.src, ip.sport)
        f = self.flows.get(fwd)
        if f is not None:
            return f, True
        f = self.flows.get(rev)
        if f is not None:
            return f, False
        if ip.proto == 6 and (ip.flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK):
            f = Flow(ip.proto, ip.dst, ip.dport, ip.src, ip.sport)  # mid-handshake pickup
            self.flows[rev] = f
            return f, False
        f = Flow(ip.proto, ip.src, ip.sport, ip.dst, ip.dport)
        self.flows[fwd] = f
        return f, True

    # --------------------------------------------------------------- injection
    def _rst(self, flow: Flow, spec: RstSpec, base_client: int, base_server: int,
             rule: Rule) -> None:
        flags = TCP_RST | (TCP_ACK if spec.flags.upper() == "RA" else 0)
        ipid = self._ipid(spec.ipid)
        if spec.to == "client":
            seq = _seq_add(base_server, spec.seq_offset)
            ack = base_client if flags & TCP_ACK else 0
            pkt = build_tcp(flow.server, flow.client, flow.sport, flow.cport, seq, ack, flags,
                            window=spec.window, ttl=spec.ttl, ipid=ipid)
            dst = flow.client
        else:
            seq = _seq_add(base_client, spec.seq_offset)
            ack = base_server if flags & TCP_ACK else 0
            pkt = build_tcp(flow.client, flow.server, flow.cport, flow.sport, seq, ack, flags,
                            window=spec.window, ttl=spec.ttl, ipid=ipid)
            dst = flow.server
        self.send(pkt, dst)
        self.log("inject_rst", flow, rule=rule.name, to=spec.to, flags=spec.flags, seq=seq,
                 ack=ack, ttl=spec.ttl, ipid=ipid, window=spec.window)

    # ------------------------------------------------------------------ decide
    def decide(self, ip: IPv4) -> tuple[str, float, list[Any]]:
        """Return (verdict 'accept'|'drop', hold_ms, post-verdict callbacks)."""
        now = self.clock()
        if not ip.l4_ok or ip.proto not in (6, 17):
            return self._link(ip, "accept", [])
        flow, c2s = self._flow(ip, now)
        post: list[Any] = []

        # TCP sequence tracking
        if ip.proto == 6:
            end = _seq_add(ip.seq, len(ip.data) + (1 if ip.flags & (TCP_SYN | TCP_FIN) else 0))
            if c2s:
                if flow.client_next is None or ((end - flow.client_next) & 0xFFFFFFFF) < 1 << 31:
                    flow.client_next = end
            else:
                if flow.server_next is None or ((end - flow.server_next) & 0xFFFFFFFF) < 1 << 31:
                    flow.server_next = end

        # an already blocked flow: drop everything both ways
        if flow.blocked_until > now:
            self.log("drop_flow", flow, dir="c2s" if c2s else "s2c")
            return "drop", 0.0, []

        # residual state: new SYNs to a recently triggered (client, server, port)
        if ip.proto == 6 and c2s and (ip.flags & (TCP_SYN | TCP_ACK)) == TCP_SYN:
            key = (flow.client, flow.server, flow.sport, 6)
            hit = self.residual.get(key)
            if hit and hit[0] > now:
                rule = hit[1]
                flow.residual_hit = True
                if rule.residual_action == "rst":
                    spec = rule.residual_rst
                    fl = TCP_RST | TCP_ACK
                    ipid = self._ipid(spec.ipid)
                    pkt = build_tcp(flow.server, flow.client, flow.sport, flow.cport,
                                    _seq_add(0, spec.seq_offset), _seq_add(ip.seq, 1), fl,
                                    window=spec.window, ttl=spec.ttl, ipid=ipid)
                    post.append(lambda p=pkt, d=flow.client: self.send(p, d))
                    self.log("residual_rst", flow, rule=rule.name, ttl=spec.ttl, ipid=ipid,
                             remaining=round(hit[0] - now, 3))
                else:
                    flow.blocked_until = hit[0]
                    self.log("residual_drop", flow, rule=rule.name,
                             remaining=round(hit[0] - now, 3))
                return "drop", 0.0, post

        for rule in self.cfg.rules:
            if not self._rule_applies(rule, flow):
                continue
            res = self._apply(rule, ip, flow, c2s, now)
            if res is not None:
                verdict, extra = res
                post.extend(extra)
                if verdict == "drop":
                    return "drop", 0.0, post
                break

        if not c2s and flow.police_rate > 0:
            flow.tokens = min(flow.police_burst,
                              flow.tokens + (now - flow.tokens_ts) * flow.police_rate)
            flow.tokens_ts = now
            if len(ip.raw) > flow.tokens:
                self.log("police_drop", flow, bytes=len(ip.raw))
                return "drop", 0.0, post
            flow.tokens -= len(ip.raw)

        hold = 0.0
        if not c2s and flow.hold_from_server_ms:
            hold = flow.hold_from_server_ms
            self.log("hold_genuine", flow, ms=hold)
        return self._link(ip, "accept", post, hold)

    def _link(self, ip: IPv4, verdict: str, post: list[Any], hold: float = 0.0
              ) -> tuple[str, float, list[Any]]:
        if self.cfg.loss > 0:
            skip = (self.cfg.loss_skip_syn and ip.proto == 6 and ip.l4_ok
                    and ip.flags & TCP_SYN)
            if not skip and self.loss_rng.random() < self.cfg.loss:
                self.log("link_loss", None, pkt=f"{ip.src}>{ip.dst} proto {ip.proto} len {len(ip.raw)}")
                return "drop", 0.0, post
        return verdict, hold + self.cfg.delay_ms, post

    def _trigger(self, rule: Rule, flow: Flow, now: float, **kw: Any) -> None:
        flow.triggered.append(rule.name)
        self.log("trigger", flow, rule=rule.name, match=rule.match, action=rule.action, **kw)
        if rule.residual_seconds > 0 and flow.proto == 6:
            self.residual[(flow.client, flow.server, flow.sport, 6)] = (
                now + rule.residual_seconds, rule)
        if rule.drop_flow_seconds > 0:
            flow.blocked_until = now + rule.drop_flow_seconds

    def _apply(self, rule: Rule, ip: IPv4, flow: Flow, c2s: bool, now: float
               ) -> tuple[str, list[Any]] | None:
        m = rule.match
        if m == "ip":
            if rule.action != "drop":
                return None
            if rule.name not in flow.triggered:
                self._trigger(rule, flow, now, dir="c2s" if c2s else "s2c")
            else:
                self.log("drop_ip", flow, dir="c2s" if c2s else "s2c")
            return "drop", []
        if not c2s:
            return None
        if m in ("sni", "http_host") and ip.proto == 6 and ip.data:
            name = None
            if m == "sni":
                ch = tls_client_hello_sni(ip.data)
                name = ch.sni if ch else None
            else:
                name = http_host(ip.data)
            if not self._name_match(rule, name):
                return None
            self._trigger(rule, flow, now, name=name)
            return self._tcp_action(rule, ip, flow)
        if m == "quic_sni" and ip.proto == 17 and ip.data:
            from .quic import initial_sni  # lazy: needs cryptography
            ch = initial_sni(ip.data)
            if not ch or not self._name_match(rule, ch.sni):
                return None
            self._trigger(rule, flow, now, name=ch.sni)
            return ("drop", []) if rule.action == "drop" else None
        if m == "dns_name" and ip.proto == 17 and flow.sport == 53:
            q = parse_dns_query(ip.data)
            if q is None or not self._name_match(rule, q.qname):
                return None
            self._trigger(rule, flow, now, name=q.qname, qtype=q.qtype, txid=q.txid)
            if rule.action == "drop":
                return "drop", []
            if rule.action == "dns_inject":
                ipid = self._ipid(rule.ip_id)
                pkt = build_udp(flow.server, flow.client, 53, flow.cport,
                                build_dns_a_answer(q, rule.forged_addrs, ttl=rule.dns_ttl),
                                ttl=rule.ip_ttl, ipid=ipid)
                flow.hold_from_server_ms = rule.real_answer_delay_ms
                self.log("inject_dns", flow, rule=rule.name, name=q.qname,
                         answer=rule.forged_addrs, ip_ttl=rule.ip_ttl, ipid=ipid,
                         dns_ttl=rule.dns_ttl)
                return "accept", [lambda p=pkt, d=flow.client: self.send(p, d)]
            return None
        if m == "openvpn" and ip.proto == 17 and ip.data:
            # P_CONTROL_HARD_RESET_CLIENT_V2 (opcode 7, key id 0) / V3 (opcode 10)
            if ip.data[0] in (0x38, 0x50) and 14 <= len(ip.data) <= 300:
                self._trigger(rule, flow, now, opcode=ip.data[0] >> 3, length=len(ip.data))
                return ("drop", []) if rule.action == "drop" else None
            return None
        if m == "wireguard" and ip.proto == 17 and ip.data:
            if len(ip.data) == 148 and ip.data[:4] == b"\x01\x00\x00\x00":
                self._trigger(rule, flow, now, msg_type=1, length=148)
                return ("drop", []) if rule.action == "drop" else None
            return None
        return None

    def _tcp_action(self, rule: Rule, ip: IPv4, flow: Flow) -> tuple[str, list[Any]]:
        end_client = _seq_add(ip.seq, len(ip.data))
        server_next = flow.server_next if flow.server_next is not None else ip.ack
        if rule.action == "rst":
            base_client_for_server = end_client if rule.pass_trigger else ip.seq
            callbacks = []
            for spec in rule.rst:
                base_c = end_client if spec.to == "client" else base_client_for_server
                callbacks.append(lambda s=spec, bc=base_c: self._rst(flow, s, bc, server_next,
                                                                     rule))
            return ("accept" if rule.pass_trigger else "drop"), callbacks
        if rule.action == "drop":
            return "drop", []
        if rule.action == "throttle":
            flow.police_rate = rule.rate_kbps * 1000 / 8
            flow.police_burst = flow.tokens = float(rule.burst_bytes)
            flow.tokens_ts = self.clock()
            return "accept", []
        if rule.action == "blockpage":
            flow.blocked_until = max(flow.blocked_until, self.clock() + 30.0)
            body = rule.blockpage.encode()
            page = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            ipid = self._ipid(rule.ip_id)
            p1 = build_tcp(flow.server, flow.client, flow.sport, flow.cport, server_next,
                           end_client, TCP_PSH | TCP_ACK, window=8192, data=page,
                           ttl=rule.ip_ttl, ipid=ipid)
            p2 = build_tcp(flow.server, flow.client, flow.sport, flow.cport,
                           _seq_add(server_next, len(page)), end_client, TCP_FIN | TCP_ACK,
                           window=8192, ttl=rule.ip_ttl, ipid=(ipid + 1) & 0xFFFF)
            p3 = build_tcp(flow.client, flow.server, flow.cport, flow.sport, ip.seq, 0, TCP_RST,
                           ttl=rule.ip_ttl, ipid=(ipid + 2) & 0xFFFF)

            def inject() -> None:
                self.send(p1, flow.client)
                self.send(p2, flow.client)
                self.send(p3, flow.server)
                self.log("inject_blockpage", flow, rule=rule.name, bytes=len(page),
                         ip_ttl=rule.ip_ttl, ipid=ipid)
            return "drop", [inject]
        return "accept", []


# ---------------------------------------------------------------------- main loop

class RawSender:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

    def __call__(self, pkt: bytes, dst: str) -> None:
        self.sock.sendto(pkt, (dst, 0))


def serve(cfg: CensorConfig) -> dict[str, Any]:
    from .nfqueue import NfQueue

    sender = RawSender()
    censor = Censor(cfg, send=sender)
    q = NfQueue(cfg.queue_num)
    held: list[tuple[float, int, int]] = []
    counter = 0
    stop = False

    def _stop(*_a: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logf = open(cfg.log_path, "w", encoding="utf-8")
    written = 0
    print("READY", flush=True)
    packets = 0
    try:
        while not stop:
            now = time.monotonic()
            timeout = 0.2
            if held:
                timeout = max(0.0, min(timeout, held[0][0] - now))
            try:
                r, _, _ = select.select([q], [], [], timeout)
            except InterruptedError:
                r = []
            if r:
                for qp in q.recv():
                    packets += 1
                    ip = parse_ipv4(qp.payload)
                    if ip is None:
                        q.accept(qp.packet_id)
                        continue
                    try:
                        verdict, hold, post = censor.decide(ip)
                    except Exception as exc:  # never stall the queue on a censor bug
                        censor.log("error", None, error=f"{type(exc).__name__}: {exc}")
                        print(f"censor error: {exc!r}", file=sys.stderr, flush=True)
                        verdict, hold, post = "accept", 0.0, []
                    if verdict == "drop":
                        q.drop(qp.packet_id)
                    elif hold > 0:
                        counter += 1
                        heapq.heappush(held, (time.monotonic() + hold / 1000.0, counter,
                                              qp.packet_id))
                    else:
                        q.accept(qp.packet_id)
                    for cb in post:
                        cb()
            now = time.monotonic()
            while held and held[0][0] <= now:
                q.accept(heapq.heappop(held)[2])
            while written < len(censor.events):
                logf.write(json.dumps(censor.events[written]) + "\n")
                written += 1
            logf.flush()
    finally:
        for _t, _c, pid in held:
            try:
                q.accept(pid)
            except OSError:
                pass
        while written < len(censor.events):
            logf.write(json.dumps(censor.events[written]) + "\n")
            written += 1
        logf.close()
        q.close()
    return {"packets": packets, "counts": censor.counts}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding="utf-8") as fh:
        cfg = CensorConfig.from_dict(json.load(fh))
    summary = serve(cfg)
    print("SUMMARY " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
