"""DNS injection: forged DNS responses racing the real resolver's answer.

Censor model
    An on-path injector sees the client's query to a resolver outside the censored network,
    matches the query name against a blocklist and sends its own response first, spoofing the
    resolver's address, port and the query's transaction id. It cannot stop the query, so the
    genuine response usually arrives too, a little later. The GFW has done this since at least
    2002 (Anonymous, "The Collateral Damage of Internet Censorship by DNS Injection", SIGCOMM
    CCR 2012; Farnan, Darer & Wright, "Poisoning the Well", WPES 2016). Duan et al. ("Hold-On:
    Protecting Against On-Path DNS Poisoning", SATIN 2012) showed the forged and genuine replies
    differ in IP TTL and timing; Anonymous et al. ("Triplet Censors", FOCI 2020) fingerprinted
    three concurrent injectors (one of them copies the query's IP TTL into its reply, so a TTL
    match does not clear a response); Hoang et al. ("How Great is the Great Firewall?", USENIX
    Security 2021, GFWatch) saw injected IPv4 answers drawn from a pool dominated by Facebook,
    Twitter and Dropbox addresses and every forged AAAA answer inside Teredo's 2001::/32.

Input: one finished :class:`~analyzer.track.dns.DnsTransaction` (every response to one query)
and the resolver's :class:`~analyzer.track.dns.ResolverBaseline` (all its responses so far;
this transaction's own responses are subtracted before comparing).

Which response is genuine: among the responses with a usable answer (NOERROR or NXDOMAIN, TC
clear), the one with the fewest suspicious traits (forged-pool or bogon answers, anomalies,
header fields off the resolver's baseline); on a tie the LATEST, since the injector wins the
race and the resolver answers last (Hold-On). Responses whose answer set (type + value, order,
case and DNS TTLs ignored) differs from the genuine one are marked forged, and so is any
response with a forged-pool answer.

Signals (``SIGNALS``):

- ``multiple_answers``: two or more responses to one query with different answer sets.
- ``ttl_mismatch``: a forged response's IP TTL is ``dns_ttl_delta`` or more away from the genuine
  response's, or from every TTL the resolver commonly uses (baseline).
- ``ipid_mismatch``: the resolver's IP-IDs are sequential (or always zero) and the response's
  IP-ID is far (``IPID_GAP``) from its neighbours (or non-zero).
- ``df_mismatch``: DF differs from the genuine response's / the resolver's usual DF.
- ``flags_mismatch``: DNS header flags (AA, RA, and for the same query also RD, AD, CD) differ
  from the genuine response's, or AA/RA differ from the resolver's usual pattern.
- ``forged_address_pool``: an answer in ``analyzer/data/gfw_dns_forged_ips.txt`` (the fixed
  2007-2019 pool for any name; Facebook/Twitter/Dropbox ranges for names outside those
  companies' domains), or an AAAA answer in 2001::/32 (Teredo, RFC 4380) for a name that is not
  a Teredo server.
- ``bogon_answer``: a private, loopback, link-local, shared, documentation, benchmarking,
  multicast, reserved or unspecified address (RFC 6890 registries) answered for a public name.
  Names ending in .local, .lan, .home, .corp, .internal, .intranet, .private, .localhost,
  .localdomain, .home.arpa, in-addr.arpa or ip6.arpa, and single-label names, are exempt
  (RFC 6762 App. G, RFC 8375, RFC 6761).
  NOT enough alone: OONI's analysis notes a site can be misconfigured to a private address;
  ad-blocking resolvers (Pi-hole answers 0.0.0.0) and proxies' "fake-ip" DNS (Clash/sing-box
  answer 198.18.0.0/15) do this by design. Alone it yields a finding capped at
  ``BOGON_ALONE_MAX`` with a note saying so; some censors (Iran's 10.10.34.x) do use it.
- ``malformed_answer``: a forged response carries parser anomalies while the genuine one is clean.
- ``answer_from_non_resolver``: one transmission of the query drew both a DNS answer "from"
  the destination and an ICMP destination unreachable saying it never reached a DNS service:
  port unreachable from the destination's own stack, or host/network/admin unreachable from
  a router when the destination answered nothing else in the capture. A retransmission sent
  after the error (a restarted server) does not count. Only evidence the capture holds is
  used; a TCP RST from a server that also "answered" over UDP, or off-path probing, is not
  implemented.

A finding needs ``multiple_answers``, ``forged_address_pool`` or ``answer_from_non_resolver``;
otherwise at least two header signals on a lone response against a baseline of at least
``MIN_BASELINE`` other responses (capped at ``HEADER_ONLY_MAX``), or a bogon answer (capped at
``BOGON_ALONE_MAX``). Strength is a noisy-OR of per-signal weights (``WEIGHTS``):
``1 - prod(1 - w)``, at most ``MAX_STRENGTH``.

Thresholds: ``Thresholds.dns_ttl_delta`` (TTL), ``Thresholds.ipid_seq_step`` (what counts as a
sequential IP-ID step); module constants ``MIN_BASELINE``, ``BASELINE_MIN_SHARE``, ``IPID_GAP``,
``SEQUENTIAL_SHARE`` (candidates for ``Thresholds``).

Benign guards (tests/dns/test_dns_injection.py): CDN rotation across resolvers and the same
query sent to two resolvers (different transactions: the tracker keys on the server); NXDOMAIN
alone; a retransmitted query answered twice identically; byte-identical duplicates; a single
normal answer; the same records in another order; private answers for internal names; two
different answers that share a record and otherwise look alike (an injector never knows the
genuine address: this is a resolver rotating its answer between retransmissions); SERVFAIL,
REFUSED or TC=1 responses are not compared as answers.

Known false positives: a resolver that returns a different, non-overlapping set to a
retransmission (DNS load balancers with tiny answer sets) - ``multiple_answers`` alone stays at
0.5; a vanity domain pointing directly at a Facebook/Twitter/Dropbox address; captures merged
from two vantage points (TTL). Known false negatives: an injector that copies the query's TTL
(Triplet Censors) and arrives last; a poisoned resolver cache (one response, forged address
outside the shipped pool).
"""
from __future__ import annotations

import ipaddress
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Iterable, Optional, Union

from analyzer import data_text
from analyzer.config import Thresholds
from analyzer.decode.dns import (
    FLAG_AA,
    FLAG_AD,
    FLAG_CD,
    FLAG_RA,
    FLAG_RD,
    FLAG_TC,
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    TYPE_AAAA,
    TYPE_CNAME,
    rcode_name,
    type_name,
)
from analyzer.decode.packet import ICMPV6_DEST_UNREACH, ICMP_DEST_UNREACH
from analyzer.model import (
    Evidence,
    Finding,
    LadderPacket,
    Technique,
    Trigger,
    format_endpoint,
    format_ip,
)
from analyzer.track.dns import (
    BASELINE_FLAG_BITS,
    DnsResponse,
    DnsTransaction,
    IcmpError,
    ResolverBaseline,
)

NAME: Final = "dns_injection"

SIGNALS: dict[str, str] = {
    "multiple_answers": "two or more responses to one query with different answer sets",
    "forged_address_pool": "an answer in the documented GFW forged-address pool (or Teredo AAAA)",
    "answer_from_non_resolver": "an answer 'from' a host that reported the DNS port unreachable",
    "ttl_mismatch": "a response's IP TTL differs from the resolver's genuine TTLs",
    "ipid_mismatch": "a response's IP-ID breaks the resolver's IP-ID behaviour",
    "df_mismatch": "a response's DF bit differs from the resolver's",
    "flags_mismatch": "a response's DNS header flags differ from the resolver's",
    "malformed_answer": "a forged response is malformed while the genuine one is clean",
    "bogon_answer": "a private/reserved/special address answered for a public name (weak alone)",
}
STRONG_SIGNALS: Final = ("multiple_answers", "forged_address_pool", "answer_from_non_resolver")
HEADER_SIGNALS: Final = ("ttl_mismatch", "ipid_mismatch", "df_mismatch", "flags_mismatch")

# Noisy-OR weights: strength = 1 - prod(1 - WEIGHTS[s]).
WEIGHTS: dict[str, float] = {
    "multiple_answers": 0.5,
    "forged_address_pool": 0.6,
    "answer_from_non_resolver": 0.6,
    "ttl_mismatch": 0.3,
    "ipid_mismatch": 0.15,
    "df_mismatch": 0.1,
    "flags_mismatch": 0.15,
    "malformed_answer": 0.1,
    "bogon_answer": 0.15,
}
MAX_STRENGTH: Final = 0.99
LOOKUP_CACHE: Final = 65_536  # entries each lookup cache here keeps (memory bound, not a threshold)
BOGON_ALONE_MAX: Final = 0.2  # a bogon answer with nothing else is a hint, not proof (OONI)
HEADER_ONLY_MAX: Final = 0.4  # header mismatches on a lone response: route changes, anycast

# Candidates for Thresholds (module constants until the lead moves them):
# other responses the resolver must have sent before its baseline is used at all
MIN_BASELINE: Final = 3
# a TTL / DF / flag pattern seen in at least this share of the resolver's other responses is
# one of its own
BASELINE_MIN_SHARE: Final = 0.2
# an IP-ID further than this (mod 2**16) from a sequential resolver's neighbouring IP-IDs is
# out of sequence (same spirit as Thresholds.rst_ipid_gap)
IPID_GAP: Final = 1000
# a resolver's IP-IDs are "sequential" when at least this share of successive steps are in
# (0, Thresholds.ipid_seq_step]
SEQUENTIAL_SHARE: Final = 0.75

IPID_MOD: Final = 1 << 16
COMPARED_FLAG_BITS: Final = FLAG_AA | FLAG_RA | FLAG_RD | FLAG_AD | FLAG_CD  # same query, same resolver
ANSWER_RCODES: Final = (RCODE_NOERROR, RCODE_NXDOMAIN)
ICMP_PORT_UNREACH: Final = 3  # RFC 792
ICMPV6_PORT_UNREACH: Final = 4  # RFC 4443
MAX_LISTED_ANSWERS: Final = 3  # answers spelled out in one evidence line

TEREDO_PREFIX: Final = ipaddress.IPv6Network("2001::/32")  # RFC 4380
TEREDO_LABEL: Final = "teredo"

# RFC 6890 special-purpose registries (plus multicast and the reserved 240/4).
BOGONS_V4: Final = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
))
BOGONS_V6: Final = tuple(ipaddress.IPv6Network(n) for n in (
    "::/128", "::1/128", "::ffff:0:0/96", "100::/64", "2001:db8::/32", "fc00::/7",
    "fe80::/10", "ff00::/8",
))
# Names that legitimately resolve to private space (RFC 6762 App. G, RFC 8375, RFC 6761).
INTERNAL_SUFFIXES: Final = (
    "local", "lan", "home", "corp", "internal", "intranet", "private", "localhost",
    "localdomain", "home.arpa", "in-addr.arpa", "ip6.arpa",
)

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@dataclass(frozen=True, slots=True)
class PoolEntry:
    network: Network
    owners: tuple[str, ...]  # empty: forged for every name


class PrefixTable:
    """Which of a few prefixes hold an address: one dict probe per distinct prefix length
    (the tables here have fewer than ten lengths), integers only (hot path)."""

    __slots__ = ("_masks", "_table", "_seen")

    def __init__(self, items: Iterable[tuple[Network, PoolEntry]]) -> None:
        # answers repeat (a few hundred servers, thousands of queries): remember the last
        # addresses looked up (bounded; the table never changes after this constructor)
        self._seen: dict[bytes, tuple[PoolEntry, ...]] = {}
        self._table: dict[tuple[int, int, int], list[PoolEntry]] = {}
        masks: dict[int, set[tuple[int, int]]] = {}
        for net, entry in items:
            size = net.max_prefixlen // 8
            key = (size, net.prefixlen, int(net.network_address))
            self._table.setdefault(key, []).append(entry)
            masks.setdefault(size, set()).add((net.prefixlen, int(net.netmask)))
        self._masks = {size: tuple(sorted(m, reverse=True)) for size, m in masks.items()}

    def lookup(self, addr: bytes) -> tuple[PoolEntry, ...]:
        seen = self._seen.get(addr)
        if seen is not None:
            return seen
        masks = self._masks.get(len(addr))
        out: list[PoolEntry] = []
        if masks:
            value = int.from_bytes(addr, "big")
            for plen, mask in masks:
                hit = self._table.get((len(addr), plen, value & mask))
                if hit:
                    out.extend(hit)
        found = tuple(out)
        if len(self._seen) >= LOOKUP_CACHE:
            self._seen.clear()
        self._seen[bytes(addr)] = found
        return found


class ForgedPool:
    """The forged-address pool: entries plus their prefix table (immutable after build)."""

    __slots__ = ("entries", "_table")

    def __init__(self, entries: Iterable[PoolEntry]) -> None:
        self.entries: tuple[PoolEntry, ...] = tuple(entries)
        self._table = PrefixTable((e.network, e) for e in self.entries)

    def holds(self, addr: bytes) -> bool:
        """True when some entry's network holds ``addr`` (match() can only answer then)."""
        return bool(self._table.lookup(addr))

    def match(self, addr: bytes, names: tuple[str, ...]) -> Optional[PoolEntry]:
        """The entry that makes ``addr`` a forged answer for these names, or None."""
        for e in self._table.lookup(addr):
            if e.owners and any(_under(n, d) for n in names for d in e.owners):
                continue
            return e
        return None


# (as integers once: int() of an ipaddress object runs Python code on every call)
_TEREDO_MASK: Final = int(TEREDO_PREFIX.netmask)
_TEREDO_NET: Final = int(TEREDO_PREFIX.network_address)


def parse_pool(text: str) -> ForgedPool:
    """Parse the pool file format (see the file's header)."""
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        owners: tuple[str, ...] = ()
        for p in parts[1:]:
            if p.startswith("owner="):
                owners = tuple(d.strip().lower() for d in p[len("owner="):].split(",") if d)
        entries.append(PoolEntry(ipaddress.ip_network(parts[0], strict=False), owners))
    return ForgedPool(entries)


@lru_cache(maxsize=1)
def default_pool() -> ForgedPool:
    """The shipped pool (package data, read once)."""
    text = data_text("gfw_dns_forged_ips.txt")
    return parse_pool(text)


def _under(name: str, domain: str) -> bool:
    return name == domain or name.endswith("." + domain)


@lru_cache(maxsize=65_536)
def is_internal_name(name: str) -> bool:
    """Names for which private answers are expected (single-label or internal suffixes)."""
    name = name.rstrip(".")
    if not name or "." not in name:
        return True
    return any(_under(name, s) for s in INTERNAL_SUFFIXES)


_BOGON_TABLE: Final = PrefixTable((n, PoolEntry(n, ())) for n in BOGONS_V4 + BOGONS_V6)


def is_bogon(addr: bytes) -> bool:
    return bool(_BOGON_TABLE.lookup(addr))


def _is_teredo_forgery(addr: bytes, qname: str) -> bool:
    if len(addr) != 16 or int.from_bytes(addr, "big") & _TEREDO_MASK != _TEREDO_NET:
        return False
    return not any(TEREDO_LABEL in label for label in qname.split("."))


# --- per-response facts -----------------------------------------------------------------------
AnswerKey = tuple[int, frozenset[tuple[int, str]]]


def _answer_key(r: DnsResponse) -> AnswerKey:
    return r.rcode, frozenset((rr.rtype, rr.value.lower()) for rr in r.answers)


def _usable(r: DnsResponse) -> bool:
    return r.rcode in ANSWER_RCODES and not r.flags & FLAG_TC


def _chain_names(txn: DnsTransaction, r: DnsResponse) -> tuple[str, ...]:
    names = [txn.qname]
    for rr in r.answers:
        names.append(rr.name)
        if rr.rtype == TYPE_CNAME and rr.target:
            names.append(rr.target)
    return tuple(dict.fromkeys(names))


def _pool_hits(txn: DnsTransaction, r: DnsResponse, pool: ForgedPool) -> list[str]:
    names: Optional[tuple[str, ...]] = None  # the name chain, built only for a pool address
    hits = []
    for rr in r.answers:
        if rr.address is None:
            continue
        if rr.rtype == TYPE_AAAA and _is_teredo_forgery(rr.address, txn.qname):
            hits.append(f"{format_ip(rr.address)} (Teredo 2001::/32)")
        elif pool.holds(rr.address):
            if names is None:
                names = _chain_names(txn, r)
            if pool.match(rr.address, names) is not None:
                hits.append(f"{format_ip(rr.address)} (known forged pool)")
    return hits


def _bogon_hits(txn: DnsTransaction, r: DnsResponse) -> list[str]:
    if is_internal_name(txn.qname):
        return []
    return [f"{format_ip(rr.address)} (bogon)" for rr in r.answers
            if rr.address is not None and is_bogon(rr.address)]


class _Others:
    """The resolver's baseline minus this transaction's own responses. ``ipids`` is computed
    when first read: only the IP-ID check needs it, and it mostly does not run."""

    __slots__ = ("n", "ttls", "df", "flags", "_ipids", "_baseline", "_txn")

    def __init__(self, n: int, ttls: dict[int, int], df: dict[bool, int], flags: dict[int, int],
                 baseline: Optional[ResolverBaseline], txn: Optional[DnsTransaction]) -> None:
        self.n = n
        self.ttls = ttls
        self.df = df
        self.flags = flags
        self._ipids: Optional[tuple[tuple[int, int, int], ...]] = None if baseline else ()
        self._baseline = baseline
        self._txn = txn

    @property
    def ipids(self) -> tuple[tuple[int, int, int], ...]:
        if self._ipids is None:
            assert self._baseline is not None and self._txn is not None
            samples = self._baseline.ipids
            own = self._txn.responses
            # the positions of this transaction's own responses (compared as integers: no
            # set of pairs built per sample)
            drop = [i for i, s in enumerate(samples) for r in own
                    if s[1] == r.frame and s[0] == r.input]
            self._ipids = (tuple([s for i, s in enumerate(samples) if i not in drop])
                           if drop else samples)
        return self._ipids


def _others(txn: DnsTransaction, b: Optional[ResolverBaseline]) -> _Others:
    if b is None:
        return _Others(0, {}, {}, {}, None, None)
    ttls = {v: c for v, c in b.ttls}  # (a comprehension: dict() of pairs is a generic call)
    df = {True: b.df_set, False: b.df_clear}
    flags = {v: c for v, c in b.flag_patterns}
    for r in txn.responses:
        ttls[r.ttl] = max(0, ttls.get(r.ttl, 0) - 1)
        df[r.df] = max(0, df[r.df] - 1)
        pat = r.flags & BASELINE_FLAG_BITS
        flags[pat] = max(0, flags.get(pat, 0) - 1)
    n = max(0, b.responses - len(txn.responses))
    return _Others(n, ttls, df, flags, b, txn)


def _mode(counts: dict[int, int]) -> Optional[int]:
    """The most frequent value (the smallest of the most frequent), None if no count > 0."""
    best: Optional[int] = None
    top = 0
    for v, c in counts.items():
        if c > top or (c == top and best is not None and v < best):
            best, top = v, c
    return best


def _ipid_behaviour(samples: list[tuple[int, int, int]], step: int) -> str:
    """"unknown", "zero", "sequential" or "random": the IP-IDs (``s[2]``) of the samples, in
    their order. (A loop over integers: no tuple of the values is built.)"""
    n = len(samples)
    if n < MIN_BASELINE:
        return "unknown"
    prev = -1
    zero = True
    seq = 0
    for s in samples:
        v = s[2]
        if v != 0:
            zero = False
        if prev >= 0 and 0 < (v - prev) % IPID_MOD <= step:
            seq += 1
        prev = v
    if zero:
        return "zero"
    return "sequential" if seq >= SEQUENTIAL_SHARE * (n - 1) else "random"


def _in_order(samples: list[tuple[int, int, int]]) -> bool:
    """Whether the samples are sorted by (input, frame): they arrive so, nearly always."""
    last_input = last_frame = -1
    for s in samples:
        if s[0] < last_input or (s[0] == last_input and s[1] < last_frame):
            return False
        last_input, last_frame = s[0], s[1]
    return True


def _ipid_check(r: DnsResponse, samples: list[tuple[int, int, int]],
                th: Thresholds) -> Optional[str]:
    """Reason text when ``r``'s IP-ID breaks the resolver's behaviour, else None."""
    if r.ipid < 0:
        return None
    if not _in_order(samples):
        samples = sorted(samples)
    behaviour = _ipid_behaviour(samples, th.ipid_seq_step)
    if behaviour == "zero":
        return f"IP-ID {r.ipid} where the resolver always sends 0" if r.ipid != 0 else None
    if behaviour != "sequential":
        return None
    # the samples before and after r's packet (sorted by (input, frame): a pair sorts before
    # every triple that starts with it)
    i = bisect_left(samples, (r.input, r.frame))
    j = i
    while j < len(samples) and samples[j][0] == r.input and samples[j][1] == r.frame:
        j += 1
    prev, nxt = samples[:i], samples[j:]
    fits = ((bool(prev) and (r.ipid - prev[-1][2]) % IPID_MOD <= IPID_GAP)
            or (bool(nxt) and (nxt[0][2] - r.ipid) % IPID_MOD <= IPID_GAP))
    if fits:
        return None
    near = prev[-1][2] if prev else nxt[0][2]
    return f"IP-ID {r.ipid} out of the resolver's sequence (near {near})"


def _header_checks(r: DnsResponse, ref: Optional[DnsResponse], others: _Others,
                   th: Thresholds, ipid: bool = True) -> dict[str, str]:
    """Header signals of ``r`` against the genuine response ``ref`` (if any) and the baseline.
    ``ipid=False`` leaves out the IP-ID check (the costliest; see :func:`_ipid_signal`)."""
    out: dict[str, str] = {}
    enough = others.n >= MIN_BASELINE
    floor = BASELINE_MIN_SHARE * others.n
    # TTL
    if ref is not None and abs(r.ttl - ref.ttl) >= th.dns_ttl_delta:
        out["ttl_mismatch"] = f"TTL {r.ttl} vs resolver's {ref.ttl}"
    elif enough:
        support = sum(c for v, c in others.ttls.items() if abs(v - r.ttl) < th.dns_ttl_delta)
        usual = _mode(others.ttls)
        if support < floor and usual is not None:
            out["ttl_mismatch"] = f"TTL {r.ttl} vs resolver's usual {usual}"
    # DF
    if ref is not None and r.df != ref.df:
        out["df_mismatch"] = f"DF={int(r.df)} vs resolver's DF={int(ref.df)}"
    elif enough and others.df.get(r.df, 0) < floor:
        out["df_mismatch"] = f"DF={int(r.df)} vs resolver's usual DF={int(not r.df)}"
    # DNS flags
    if ref is not None and (r.flags ^ ref.flags) & COMPARED_FLAG_BITS:
        out["flags_mismatch"] = f"flags {_flag_text(r.flags)} vs resolver's {_flag_text(ref.flags)}"
    elif enough and others.flags.get(r.flags & BASELINE_FLAG_BITS, 0) < floor:
        usual = _mode(others.flags)
        if usual is not None:
            out["flags_mismatch"] = (f"flags {_flag_text(r.flags & BASELINE_FLAG_BITS)} vs "
                                     f"resolver's usual {_flag_text(usual)}")
    # IP-ID
    if ipid:
        why = _ipid_signal(r, ref, others, th)
        if why is not None:
            out["ipid_mismatch"] = why
    return out


def _ipid_signal(r: DnsResponse, ref: Optional[DnsResponse], others: _Others,
                 th: Thresholds) -> Optional[str]:
    samples = list(others.ipids)
    if ref is not None and ref.ipid >= 0:
        samples.append((ref.input, ref.frame, ref.ipid))
    return _ipid_check(r, samples, th)


_FLAG_LETTERS: Final = ((FLAG_AA, "aa"), (FLAG_TC, "tc"), (FLAG_RD, "rd"), (FLAG_RA, "ra"),
                 (FLAG_AD, "ad"), (FLAG_CD, "cd"))


def _flag_text(flags: int) -> str:
    return "[" + " ".join(n for bit, n in _FLAG_LETTERS if flags & bit) + "]"


def _answer_text(r: DnsResponse) -> str:
    if r.rcode != RCODE_NOERROR:
        return rcode_name(r.rcode)
    if not r.answers:
        return "no answer (NOERROR)"
    vals = [rr.value for rr in r.answers if rr.address is not None]
    if not vals:
        vals = [rr.value for rr in r.answers]
    text = ", ".join(vals[:MAX_LISTED_ANSWERS])
    if len(vals) > MAX_LISTED_ANSWERS:
        text += f" (+{len(vals) - MAX_LISTED_ANSWERS} more)"
    return "answer " + text


def _summary(r: DnsResponse) -> str:
    if r.rcode != RCODE_NOERROR:
        return f"DNS {rcode_name(r.rcode)}"
    if not r.answers:
        return "DNS NOERROR (no answer)"
    addr = [rr for rr in r.answers if rr.address is not None]
    first = addr[0] if addr else r.answers[0]
    extra = len(r.answers) - 1
    more = f" (+{extra})" if extra else ""
    return f"DNS {first.type_name} {first.value} ttl={first.ttl}{more}"


def _transmission(txn: DnsTransaction, ts: float) -> int:
    """Index of the query transmission an event at ``ts`` belongs to (latest one before it)."""
    idx = -1
    for i, q in enumerate(txn.queries):
        if q.ts <= ts:
            idx = i
    return idx


def _icmp_contradicts(txn: DnsTransaction, e: IcmpError, others_n: int) -> bool:
    """The error and an answer concern the SAME query transmission, and the error says the
    query never reached a DNS service: port unreachable from the server's own stack, or any
    other destination unreachable (from a router) while the server answered nothing else."""
    port_unreach = ((e.icmp_type == ICMP_DEST_UNREACH and e.icmp_code == ICMP_PORT_UNREACH)
                    or (e.icmp_type == ICMPV6_DEST_UNREACH and e.icmp_code == ICMPV6_PORT_UNREACH))
    if port_unreach and e.src != txn.server:
        return False
    if not port_unreach and others_n:
        return False
    # A retransmission sent after the error and answered explains both (a restarted server).
    sent = _transmission(txn, e.ts)
    return sent >= 0 and any(_transmission(txn, r.ts) == sent for r in txn.responses)


def _icmp_text(e: IcmpError) -> str:
    port = e.icmp_code in (ICMP_PORT_UNREACH, ICMPV6_PORT_UNREACH)
    kind = "port" if port else f"code {e.icmp_code}"
    return f"ICMP destination unreachable ({kind}) from {format_ip(e.src)}"


def _strength(signals: Iterable[str]) -> float:
    sig = set(signals)
    keep = 1.0
    strong = False
    for s in sig:
        keep *= 1.0 - WEIGHTS.get(s, 0.0)
        if s in STRONG_SIGNALS:
            strong = True
    strength = min(MAX_STRENGTH, 1.0 - keep)
    if not strong:
        cap = BOGON_ALONE_MAX if sig <= {"bogon_answer"} else HEADER_ONLY_MAX
        strength = min(strength, cap)
    return round(strength, 4)


def _choose_reference(txn: DnsTransaction, cands: list[DnsResponse], others: _Others,
                      pool: ForgedPool, th: Thresholds) -> DnsResponse:
    # min suspicion; ties go to the latest arrival (the injector wins the race)
    ranked = [((len(_header_checks(r, None, others, th)) + len(_pool_hits(txn, r, pool))
                + len(_bogon_hits(txn, r)) + (1 if r.anomalies else 0)), -r.ts, -r.input, -r.frame, i)
              for i, r in enumerate(cands)]
    return cands[min(ranked)[-1]]


def detect_dns(txn: DnsTransaction, baseline: Optional[ResolverBaseline], th: Thresholds,
               pool: Optional[ForgedPool] = None, brief_below: float = 0.0) -> list[Finding]:
    """Findings for one finished DNS transaction (at most one). Pure: no I/O, no clock.

    A finding whose strength is below ``brief_below`` comes without evidence, ladder and
    notes: the pipeline passes the verdict threshold, as it only counts such findings."""
    if not txn.responses:
        return []
    pool = pool if pool is not None else default_pool()
    others = _others(txn, baseline)
    responses = list(txn.responses)
    usable = [r for r in responses if _usable(r)]
    # answer sets are compared only when two responses could disagree
    keys = {id(r): _answer_key(r) for r in responses} if len(usable) > 1 else {}
    distinct = {keys[id(r)] for r in usable} if len(usable) > 1 else set(range(len(usable)))

    per: dict[int, dict[str, str]] = {}  # id(response) -> signal -> reason
    forged: list[DnsResponse] = []
    ref: Optional[DnsResponse] = None
    finding_signals: list[str] = []

    pool_hits = {id(r): _pool_hits(txn, r, pool) for r in responses}
    bogon_hits = {id(r): _bogon_hits(txn, r) for r in responses}

    if len(distinct) >= 2:
        ref = _choose_reference(txn, usable, others, pool, th)
        ref_key = keys[id(ref)]
        for r in responses:
            if r is ref:
                continue
            differs = _usable(r) and keys[id(r)] != ref_key
            if not differs and not pool_hits[id(r)]:
                continue
            sig = _header_checks(r, ref, others, th)
            if r.anomalies and not ref.anomalies:
                sig["malformed_answer"] = "malformed (" + ", ".join(r.anomalies) + ")"
            forged.append(r)
            per[id(r)] = sig
        if pool_hits[id(ref)]:  # every usable answer is forged (two injectors, no resolver)
            forged.append(ref)
            per[id(ref)] = _header_checks(ref, None, others, th)
            ref = None
        ref_set = ref_key[1]
        overlap_only = (
            forged
            and all(keys[id(r)][1] & ref_set for r in forged)
            and not any(per[id(r)] or pool_hits[id(r)] or bogon_hits[id(r)] for r in forged)
        )
        if overlap_only:
            forged, per = [], {}  # a resolver rotating its answer set between retransmissions
        elif forged:
            finding_signals.append("multiple_answers")
    else:
        # One answer (possibly repeated byte for byte): judge each response on its own.
        for r in responses:
            # the IP-ID check only matters when something else is wrong already: alone it
            # is one header signal, and a lone response needs two (or a pool/bogon hit)
            sig = _header_checks(r, None, others, th, ipid=False)
            if sig or pool_hits[id(r)] or bogon_hits[id(r)]:
                why = _ipid_signal(r, None, others, th)
                if why is not None:
                    sig["ipid_mismatch"] = why
            header = [s for s in sig if s in HEADER_SIGNALS]
            if pool_hits[id(r)] or bogon_hits[id(r)] or len(header) >= 2:
                forged.append(r)
                per[id(r)] = sig

    # ICMP evidence that nothing listens at the "resolver".
    icmp = [e for e in txn.icmp_errors if _icmp_contradicts(txn, e, others.n)]
    if icmp:
        finding_signals.append("answer_from_non_resolver")
        for r in responses:
            if id(r) not in per:
                forged.append(r)
                per[id(r)] = _header_checks(r, None, others, th)
        ref = None

    if not forged:
        return []

    signals_set = set(finding_signals)
    for r in forged:
        if pool_hits[id(r)]:
            signals_set.add("forged_address_pool")
        if bogon_hits[id(r)]:
            signals_set.add("bogon_answer")
        signals_set.update(per[id(r)])
    signals = tuple(s for s in SIGNALS if s in signals_set)
    strength = _strength(signals)
    if strength < brief_below:
        return [Finding(
            detector=NAME, technique=Technique.DNS_INJECTION, trigger=Trigger.DNS_NAME,
            proto=txn.transport, client=format_endpoint(txn.client, txn.client_port),
            server=format_endpoint(txn.server, txn.server_port), signals=signals, evidence=(),
            strength=strength, first_ts=txn.first_ts, last_ts=txn.last_ts,
            domain=txn.qname or None, notes=(), flow_id=None, ladder=(),
        )]
    forged.sort(key=lambda r: (r.input, r.frame))

    evidence: list[Evidence] = []
    q = txn.query
    qtype = type_name(txn.qtype)
    qtext = txn.raw_qname or txn.qname or "(no question)"
    if q is not None:
        extra = f", sent {len(txn.queries)} times" if len(txn.queries) > 1 else ""
        why = f"query {qtype}? {qtext} (txid 0x{txn.txid:04x}{extra})"
        evidence.append(Evidence(q.frame, q.ts, why, q.input))
    for r in forged:
        parts = [_answer_text(r)]
        tags = pool_hits[id(r)] + bogon_hits[id(r)]
        if tags:
            parts = ["answer " + ", ".join(tags)]
        parts.extend(reason for s, reason in per[id(r)].items())
        if ref is not None and r.ts <= ref.ts:
            gap_ms = (ref.ts - r.ts) * 1000.0
            parts.append(f"arrived {gap_ms:.0f} ms before the genuine answer (frame {ref.frame})")
        evidence.append(Evidence(r.frame, r.ts, "forged: " + "; ".join(parts), r.input))
    if ref is not None:
        evidence.append(Evidence(ref.frame, ref.ts,
                                 f"genuine: {_answer_text(ref)}; TTL {ref.ttl}", ref.input))
    for e in icmp:
        evidence.append(Evidence(e.frame, e.ts, _icmp_text(e) + " for this query, yet it answered",
                                 e.input))
    evidence.sort(key=lambda e: (e.input, e.frame))

    forged_ids = {id(r) for r in forged}
    ladder: list[LadderPacket] = []
    for qq in txn.queries:
        ladder.append(LadderPacket(qq.frame, qq.ts, "c2s", f"DNS {qtype}? {qtext}", qq.input,
                                   ttl=qq.ttl, ipid=qq.ipid if qq.ipid >= 0 else None, len=qq.size))
    for r in responses:
        ladder.append(LadderPacket(r.frame, r.ts, "s2c", _summary(r), r.input, ttl=r.ttl,
                                   ipid=r.ipid if r.ipid >= 0 else None, len=r.size,
                                   forged=id(r) in forged_ids))
    for e in txn.icmp_errors:
        ladder.append(LadderPacket(e.frame, e.ts, "s2c", _icmp_text(e), e.input, ttl=e.ttl))
    ladder.sort(key=lambda p: (p.input, p.frame))

    notes: list[str] = []
    if ref is not None and forged:
        notes.append(f"genuine answer taken to be frame {ref.frame} (latest / most resolver-like)")
    if set(signals) <= {"bogon_answer"}:
        notes.append("a bogon answer alone is not proof of injection: a site can be misconfigured "
                     "(OONI), and ad-blocking or fake-ip resolvers answer so by design")
    elif not set(signals) & set(STRONG_SIGNALS):
        notes.append("header mismatches on a lone response: a route or anycast change can do this")

    ts_all = [e.ts for e in evidence]
    client_ip = format_ip(txn.client)
    return [Finding(
        detector=NAME,
        technique=Technique.DNS_INJECTION,
        trigger=Trigger.DNS_NAME,
        proto=txn.transport,
        client=format_endpoint(txn.client, txn.client_port),
        server=format_endpoint(txn.server, txn.server_port),
        signals=signals,
        evidence=tuple(evidence),
        strength=strength,
        first_ts=min(ts_all),
        last_ts=max(ts_all),
        domain=txn.qname or None,
        notes=tuple(notes),
        flow_id=None,
        ladder=tuple(ladder),
        link_key=f"dns:{client_ip}:{txn.qname}",
    )]
