"""DNS messages (bytes -> fields), bounds-checked, for detectors that compare answers.

RFCs: 1035 (message format, name compression), 3596 (AAAA), 6891 (EDNS(0) OPT, obsoletes
2671), 4343 (case-insensitivity is ASCII-only), 1035 §5.1 (``\\DDD`` escapes in text form).

:func:`parse_dns` decodes as far as the bytes allow. It raises
:class:`~analyzer.status.DecodeError` only when the bytes are not a DNS message at all: shorter
than the 12-byte header (``dns_truncated``) or with a question section that cannot be read
(``dns_malformed`` / ``dns_truncated``). A message that parses but is odd keeps what was
decoded and lists short ids in ``anomalies`` (see ``ANOMALIES``).

Names are kept twice: ``name`` is lowercased (ASCII only, RFC 4343) for matching and ``raw_name``
keeps the case that was on the wire. Both are text: labels joined by ``.``, with ``.`` and
``\\`` inside a label escaped by a backslash and any byte outside printable ASCII written as
``\\DDD`` (three decimal digits), so a hostile name cannot smuggle control characters into a
report. The root name is ``"."``.

Compression pointers are followed with loop protection: a pointer must point strictly before
the start of the label run it was found in (so every jump goes further back and the walk ends),
at most ``MAX_POINTER_JUMPS`` jumps, the name's wire length is at most 255 octets and a label
at most 63 (RFC 1035 §2.3.4).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final, Optional

from analyzer.model import format_ip
from analyzer.status import DecodeError

# --- RFC 1035 §4.1.1 header -------------------------------------------------------------
DNS_HEADER_LEN: Final = 12
FLAG_QR: Final = 0x8000
OPCODE_SHIFT: Final = 11
OPCODE_MASK: Final = 0x0F
FLAG_AA: Final = 0x0400
FLAG_TC: Final = 0x0200
FLAG_RD: Final = 0x0100
FLAG_RA: Final = 0x0080
FLAG_Z: Final = 0x0040  # must be zero (RFC 1035; the two bits after it became AD/CD in RFC 4035)
FLAG_AD: Final = 0x0020
FLAG_CD: Final = 0x0010
RCODE_MASK: Final = 0x000F

# RCODEs (RFC 1035 §4.1.1, RFC 6895)
RCODE_NOERROR: Final = 0
RCODE_FORMERR: Final = 1
RCODE_SERVFAIL: Final = 2
RCODE_NXDOMAIN: Final = 3
RCODE_NOTIMP: Final = 4
RCODE_REFUSED: Final = 5
RCODE_NAMES: Final = {
    RCODE_NOERROR: "NOERROR", RCODE_FORMERR: "FORMERR", RCODE_SERVFAIL: "SERVFAIL",
    RCODE_NXDOMAIN: "NXDOMAIN", RCODE_NOTIMP: "NOTIMP", RCODE_REFUSED: "REFUSED",
}

# --- RFC 1035 §4.1.4 names ----------------------------------------------------------------
LABEL_KIND_MASK: Final = 0xC0
LABEL_KIND_NORMAL: Final = 0x00
LABEL_KIND_POINTER: Final = 0xC0  # 0x40 and 0x80 are the obsolete extended label types (RFC 6891 §5)
POINTER_OFFSET_MASK: Final = 0x3FFF
POINTER_LEN: Final = 2
MAX_LABEL_LEN: Final = 63
MAX_NAME_WIRE_LEN: Final = 255  # RFC 1035 §2.3.4, counting length octets and the root octet
# A legal name has at most 127 labels, each reachable by at most one pointer.
MAX_POINTER_JUMPS: Final = 127

# --- RFC 1035 §4.1.2 / §4.1.3 question and resource records ---------------------------------
QUESTION_FIXED_LEN: Final = 4  # QTYPE, QCLASS
RR_FIXED_LEN: Final = 10  # TYPE, CLASS, TTL, RDLENGTH

TYPE_A: Final = 1
TYPE_NS: Final = 2
TYPE_CNAME: Final = 5
TYPE_SOA: Final = 6
TYPE_PTR: Final = 12
TYPE_MX: Final = 15
TYPE_TXT: Final = 16
TYPE_AAAA: Final = 28  # RFC 3596
TYPE_OPT: Final = 41  # RFC 6891
TYPE_NAMES: Final = {
    TYPE_A: "A", TYPE_NS: "NS", TYPE_CNAME: "CNAME", TYPE_SOA: "SOA", TYPE_PTR: "PTR",
    TYPE_MX: "MX", TYPE_TXT: "TXT", TYPE_AAAA: "AAAA", TYPE_OPT: "OPT", 33: "SRV", 43: "DS",
    46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS", 255: "ANY",
}
CLASS_IN: Final = 1

A_RDATA_LEN: Final = 4
AAAA_RDATA_LEN: Final = 16
MX_PREFERENCE_LEN: Final = 2
SOA_NUMBERS_LEN: Final = 20  # SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM (5 x 32 bits)

# --- RFC 6891 §6.1.3 OPT pseudo-RR: TTL field = EXTENDED-RCODE(8) VERSION(8) DO(1) Z(15) ----
OPT_EXT_RCODE_SHIFT: Final = 24
OPT_VERSION_SHIFT: Final = 16
OPT_BYTE_MASK: Final = 0xFF
OPT_FLAG_DO: Final = 0x8000
EXT_RCODE_SHIFT: Final = 4  # the 8 extended bits sit above the header's 4 RCODE bits

ANOMALIES: Final = {
    "trailing_bytes": "bytes left after every record the header counts, not parseable as records",
    "count_mismatch": "header counts differ from the records present (fewer, or more that parse)",
    "truncated_rr": "the message ends inside a resource record",
    "bad_name": "an owner or rdata name is invalid (pointer loop or forward pointer, too long, "
                "bad label type)",
    "bad_rdata": "RDATA does not fit its type (wrong length, name not ending at RDLENGTH)",
    "bad_question": "a question after the first could not be read",
    "opt_misplaced": "an OPT pseudo-RR outside the additional section or with a non-root owner",
    "multiple_opt": "more than one OPT pseudo-RR (RFC 6891 §6.1.1: FORMERR)",
    "z_bit_set": "the reserved Z header bit is set",
    "query_with_answers": "a query (QR=0) that carries answer records",
    # Added by the tracker, which knows the direction of the packet:
    "qr_mismatch": "QR bit disagrees with the direction (a response to port 53 or a query from it)",
}

_HEADER: Final = struct.Struct("!HHHHHH")
_QFIXED: Final = struct.Struct("!HH")
_RRFIXED: Final = struct.Struct("!HHIH")
_U16: Final = struct.Struct("!H")
_SOA_NUMS: Final = struct.Struct("!IIIII")


class _Truncated(Exception):
    """Internal: the data ended inside an item."""


class _BadName(Exception):
    """Internal: a name that can never be valid."""


@dataclass(init=False, frozen=True, slots=True)
class DnsQuestion:
    name: str  # lowercased, escaped text
    raw_name: str  # case as on the wire, escaped text
    qtype: int
    qclass: int

    def __init__(self, name: str, raw_name: str, qtype: int, qclass: int) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "raw_name", raw_name)
        object.__setattr__(self, "qtype", qtype)
        object.__setattr__(self, "qclass", qclass)

    @property
    def type_name(self) -> str:
        return type_name(self.qtype)


@dataclass(init=False, frozen=True, slots=True)
class SoaData:
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int

    def __init__(
            self, mname: str, rname: str, serial: int, refresh: int, retry: int, expire: int,
            minimum: int,
    ) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "mname", mname)
        object.__setattr__(self, "rname", rname)
        object.__setattr__(self, "serial", serial)
        object.__setattr__(self, "refresh", refresh)
        object.__setattr__(self, "retry", retry)
        object.__setattr__(self, "expire", expire)
        object.__setattr__(self, "minimum", minimum)


@dataclass(init=False, frozen=True, slots=True)
class DnsRR:
    """One resource record. ``rdata`` is always the raw RDATA (pointers not resolved)."""

    name: str
    raw_name: str
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes
    address: Optional[bytes] = None  # A (4 bytes) / AAAA (16 bytes)
    target: Optional[str] = None  # CNAME/NS/PTR target, MX exchange (lowercased)
    preference: Optional[int] = None  # MX
    soa: Optional[SoaData] = None

    def __init__(
            self, name: str, raw_name: str, rtype: int, rclass: int, ttl: int, rdata: bytes,
            address: Optional[bytes] = None, target: Optional[str] = None,
            preference: Optional[int] = None, soa: Optional[SoaData] = None,
    ) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "raw_name", raw_name)
        object.__setattr__(self, "rtype", rtype)
        object.__setattr__(self, "rclass", rclass)
        object.__setattr__(self, "ttl", ttl)
        object.__setattr__(self, "rdata", rdata)
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "preference", preference)
        object.__setattr__(self, "soa", soa)

    @property
    def type_name(self) -> str:
        return type_name(self.rtype)

    @property
    def value(self) -> str:
        """Canonical text of the RDATA, for comparing answers and for summaries."""
        if self.address is not None:
            return format_ip(self.address)
        if self.soa is not None:
            s = self.soa
            return f"{s.mname} {s.rname} {s.serial} {s.refresh} {s.retry} {s.expire} {s.minimum}"
        if self.target is not None:
            if self.preference is not None:
                return f"{self.preference} {self.target}"
            return self.target
        if self.rtype == TYPE_TXT:
            return escape_label(self.rdata)
        return self.rdata.hex()


@dataclass(init=False, frozen=True, slots=True)
class Edns:
    """The OPT pseudo-RR (RFC 6891 §6.1.2-6.1.3)."""

    udp_size: int
    ext_rcode: int
    version: int
    do: bool
    options: bytes

    def __init__(
            self, udp_size: int, ext_rcode: int, version: int, do: bool, options: bytes,
    ) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "udp_size", udp_size)
        object.__setattr__(self, "ext_rcode", ext_rcode)
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "do", do)
        object.__setattr__(self, "options", options)


@dataclass(init=False, frozen=True, slots=True)
class DnsMessage:
    txid: int
    flags: int  # the 16-bit flags word of the header, as on the wire
    rcode: int  # full RCODE: header bits, extended by the OPT record when present
    qdcount: int
    ancount: int
    nscount: int
    arcount: int
    questions: tuple[DnsQuestion, ...]
    answers: tuple[DnsRR, ...]
    authority: tuple[DnsRR, ...]
    additional: tuple[DnsRR, ...]  # without the OPT pseudo-RR (see ``edns``)
    edns: Optional[Edns]
    anomalies: tuple[str, ...]

    def __init__(
            self, txid: int, flags: int, rcode: int, qdcount: int, ancount: int, nscount: int,
            arcount: int, questions: tuple[DnsQuestion, ...], answers: tuple[DnsRR, ...],
            authority: tuple[DnsRR, ...], additional: tuple[DnsRR, ...], edns: Optional[Edns],
            anomalies: tuple[str, ...],
    ) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "txid", txid)
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "rcode", rcode)
        object.__setattr__(self, "qdcount", qdcount)
        object.__setattr__(self, "ancount", ancount)
        object.__setattr__(self, "nscount", nscount)
        object.__setattr__(self, "arcount", arcount)
        object.__setattr__(self, "questions", questions)
        object.__setattr__(self, "answers", answers)
        object.__setattr__(self, "authority", authority)
        object.__setattr__(self, "additional", additional)
        object.__setattr__(self, "edns", edns)
        object.__setattr__(self, "anomalies", anomalies)

    @property
    def qr(self) -> bool:
        return bool(self.flags & FLAG_QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> OPCODE_SHIFT) & OPCODE_MASK

    @property
    def aa(self) -> bool:
        return bool(self.flags & FLAG_AA)

    @property
    def tc(self) -> bool:
        return bool(self.flags & FLAG_TC)

    @property
    def rd(self) -> bool:
        return bool(self.flags & FLAG_RD)

    @property
    def ra(self) -> bool:
        return bool(self.flags & FLAG_RA)

    @property
    def ad(self) -> bool:
        return bool(self.flags & FLAG_AD)

    @property
    def cd(self) -> bool:
        return bool(self.flags & FLAG_CD)

    @property
    def question(self) -> Optional[DnsQuestion]:
        return self.questions[0] if self.questions else None


def type_name(t: int) -> str:
    return TYPE_NAMES.get(t, f"TYPE{t}")


def rcode_name(rcode: int) -> str:
    return RCODE_NAMES.get(rcode, f"RCODE{rcode}")


_PRINTABLE_MIN: Final = 0x21  # '!' (space is escaped too, as in RFC 1035 master files)
_PRINTABLE_MAX: Final = 0x7E  # '~'
_SPECIAL: Final = (0x2E, 0x5C)  # '.', '\\'


# Bytes that stand for themselves in text form; everything else is escaped.
_SAFE_BYTES: Final = bytes(b for b in range(_PRINTABLE_MIN, _PRINTABLE_MAX + 1) if b not in _SPECIAL)


def escape_label(label: bytes) -> str:
    """Text of one label: printable ASCII kept, '.' and '\\' backslash-escaped, rest ``\\DDD``."""
    if not label.translate(None, _SAFE_BYTES):  # fast path: nothing to escape
        return label.decode("ascii")
    out = []
    for b in label:
        if b in _SPECIAL:
            out.append("\\" + chr(b))
        elif _PRINTABLE_MIN <= b <= _PRINTABLE_MAX:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def _name_text(labels: list[bytes]) -> str:
    if not labels:
        return "."
    if not b"".join(labels).translate(None, _SAFE_BYTES):  # fast path: nothing to escape
        return b".".join(labels).decode("ascii")
    return ".".join([escape_label(lab) for lab in labels])


def _read_name(data: bytes, off: int) -> tuple[list[bytes], int, int]:
    """Read a (possibly compressed) name at ``off``: (labels, offset just after it, number
    of pointers followed)."""
    n = len(data)
    labels: list[bytes] = []
    pos = off
    run_start = off  # where the current run of labels began; pointers must go before it
    after: Optional[int] = None  # offset after the name in the original position
    jumps = 0
    wire_len = 1  # the root octet
    while True:
        if pos >= n:
            raise _Truncated()
        b = data[pos]
        kind = b & LABEL_KIND_MASK
        if kind == LABEL_KIND_POINTER:
            if pos + POINTER_LEN > n:
                raise _Truncated()
            ptr = _U16.unpack_from(data, pos)[0] & POINTER_OFFSET_MASK
            if after is None:
                after = pos + POINTER_LEN
            jumps += 1
            if ptr >= run_start or ptr < DNS_HEADER_LEN or jumps > MAX_POINTER_JUMPS:
                raise _BadName()
            pos = run_start = ptr
            continue
        if kind != LABEL_KIND_NORMAL:
            raise _BadName()
        if b == 0:
            return labels, (after if after is not None else pos + 1), jumps
        end = pos + 1 + b
        if end > n:
            raise _Truncated()
        wire_len += 1 + b
        if wire_len > MAX_NAME_WIRE_LEN:
            raise _BadName()
        labels.append(data[pos + 1 : end])
        pos = end


# A name already read at an offset of the same message: (lowercased, raw, pointers followed).
NameCache = dict[int, tuple[str, str, int]]


def _read_name_text(data: bytes, off: int, cache: Optional[NameCache] = None) -> tuple[str, str, int]:
    """(lowercased text, text as on the wire, offset after the name).

    The text is pure ASCII (escapes use digits and backslashes only), so ``str.lower`` on it
    is exactly the ASCII-only case folding of RFC 4343.

    ``cache`` (names of this message by offset) short-cuts the usual compressed name: a lone
    pointer to a name read before. Following the pointer would start from the same state as
    that earlier read (the pointer is checked as the walk checks it, one jump more), so the
    result is the same.
    """
    if cache is not None and off + POINTER_LEN <= len(data) and data[off] >= LABEL_KIND_POINTER:
        ptr = _U16.unpack_from(data, off)[0] & POINTER_OFFSET_MASK
        hit = cache.get(ptr)
        if hit is not None and DNS_HEADER_LEN <= ptr < off and hit[2] < MAX_POINTER_JUMPS:
            return hit[0], hit[1], off + POINTER_LEN
    labels, end, jumps = _read_name(data, off)
    raw = _name_text(labels)
    low = raw.lower()
    if cache is not None:
        cache[off] = (low, raw, jumps)
    return low, raw, end


class _Parser:
    """One message being parsed; collects anomalies."""

    __slots__ = ("data", "anomalies", "edns", "opt_seen", "names")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.names: NameCache = {}
        self.anomalies: list[str] = []
        self.edns: Optional[Edns] = None
        self.opt_seen = 0

    def flag(self, anomaly: str) -> None:
        if anomaly not in self.anomalies:
            self.anomalies.append(anomaly)

    def question(self, off: int) -> tuple[DnsQuestion, int]:
        name, raw, p = _read_name_text(self.data, off, self.names)
        if p + QUESTION_FIXED_LEN > len(self.data):
            raise _Truncated()
        qtype, qclass = _QFIXED.unpack_from(self.data, p)
        return DnsQuestion(name, raw, qtype, qclass), p + QUESTION_FIXED_LEN

    def rr(self, off: int) -> tuple[DnsRR, int]:
        """One RR; raises _Truncated/_BadName when the record cannot be delimited."""
        data = self.data
        name, raw, p = _read_name_text(data, off, self.names)
        if p + RR_FIXED_LEN > len(data):
            raise _Truncated()
        rtype, rclass, ttl, rdlen = _RRFIXED.unpack_from(data, p)
        start = p + RR_FIXED_LEN
        end = start + rdlen
        if end > len(data):
            raise _Truncated()
        rdata = data[start:end]
        try:
            rr = self._typed(name, raw, rtype, rclass, ttl, rdata, start, end)
        except (_Truncated, _BadName):
            self.flag("bad_rdata")
            rr = DnsRR(name, raw, rtype, rclass, ttl, rdata)
        return rr, end

    def _typed(self, name: str, raw: str, rtype: int, rclass: int, ttl: int, rdata: bytes,
               start: int, end: int) -> DnsRR:
        data = self.data
        if rtype == TYPE_A or rtype == TYPE_AAAA:
            want = A_RDATA_LEN if rtype == TYPE_A else AAAA_RDATA_LEN
            if len(rdata) != want:
                raise _BadName()
            return DnsRR(name, raw, rtype, rclass, ttl, rdata, address=rdata)
        if rtype in (TYPE_CNAME, TYPE_NS, TYPE_PTR):
            target = self._rdata_name(start, end)
            return DnsRR(name, raw, rtype, rclass, ttl, rdata, target=target)
        if rtype == TYPE_MX:
            if start + MX_PREFERENCE_LEN > end:
                raise _BadName()
            pref = _U16.unpack_from(data, start)[0]
            target = self._rdata_name(start + MX_PREFERENCE_LEN, end)
            return DnsRR(name, raw, rtype, rclass, ttl, rdata, target=target, preference=pref)
        if rtype == TYPE_SOA:
            mname, _r1, p = _read_name_text(data[:end], start)
            rname, _r2, p = _read_name_text(data[:end], p)
            if p + SOA_NUMBERS_LEN != end:
                raise _BadName()
            serial, refresh, retry, expire, minimum = _SOA_NUMS.unpack_from(data, p)
            soa = SoaData(mname, rname, serial, refresh, retry, expire, minimum)
            return DnsRR(name, raw, rtype, rclass, ttl, rdata, target=mname, soa=soa)
        return DnsRR(name, raw, rtype, rclass, ttl, rdata)

    def _rdata_name(self, start: int, end: int) -> str:
        # Slicing to ``end`` keeps the name inside RDLENGTH; pointers still reach back.
        name, _raw, p = _read_name_text(self.data[:end], start)
        if p != end:
            raise _BadName()
        return name

    def opt(self, rr: DnsRR, in_additional: bool) -> None:
        self.opt_seen += 1
        if self.opt_seen > 1:
            self.flag("multiple_opt")
            return
        if not in_additional or rr.name != ".":
            self.flag("opt_misplaced")
        self.edns = Edns(
            udp_size=rr.rclass,
            ext_rcode=(rr.ttl >> OPT_EXT_RCODE_SHIFT) & OPT_BYTE_MASK,
            version=(rr.ttl >> OPT_VERSION_SHIFT) & OPT_BYTE_MASK,
            do=bool(rr.ttl & OPT_FLAG_DO),
            options=rr.rdata,
        )


def parse_dns(data: bytes) -> DnsMessage:
    """Decode one DNS message (no TCP length prefix). See the module docstring.

    Uses the C parser (analyzer/_cdns.c) when it is built; :func:`parse_dns_reference`, the
    Python below, stays the reference (tests/dns/test_cdns.py compares both)."""
    if _native is not None and type(data) is bytes:
        return _native.parse(data)  # type: ignore[no-any-return]
    return parse_dns_reference(data)


def parse_dns_reference(data: bytes) -> DnsMessage:
    """:func:`parse_dns` in Python."""
    try:
        return _parse(data)
    except DecodeError:
        raise
    except (IndexError, struct.error, ValueError) as exc:  # defensive: bounds are checked
        raise DecodeError("dns_malformed") from exc


def _parse(data: bytes) -> DnsMessage:
    n = len(data)
    if n < DNS_HEADER_LEN:
        raise DecodeError("dns_truncated")
    txid, flags, qd, an, ns, ar = _HEADER.unpack_from(data, 0)
    ps = _Parser(data)
    if flags & FLAG_Z:
        ps.flag("z_bit_set")
    off = DNS_HEADER_LEN
    questions: list[DnsQuestion] = []
    stopped = False
    for i in range(qd):
        if off >= n:
            ps.flag("count_mismatch")
            stopped = True
            break
        try:
            q, off = ps.question(off)
        except _Truncated:
            if i == 0:
                raise DecodeError("dns_truncated") from None
            ps.flag("bad_question")
            stopped = True
            break
        except _BadName:
            if i == 0:
                raise DecodeError("dns_malformed") from None
            ps.flag("bad_question")
            stopped = True
            break
        questions.append(q)

    sections: list[list[DnsRR]] = [[], [], []]
    if not stopped:
        for si, count in enumerate((an, ns, ar)):
            for _ in range(count):
                if off >= n:
                    ps.flag("count_mismatch")
                    stopped = True
                    break
                try:
                    rr, off = ps.rr(off)
                except _Truncated:
                    ps.flag("truncated_rr")
                    stopped = True
                    break
                except _BadName:
                    ps.flag("bad_name")
                    stopped = True
                    break
                if rr.rtype == TYPE_OPT:
                    ps.opt(rr, si == 2)
                    if si == 2:
                        continue
                sections[si].append(rr)
            if stopped:
                break
    if not stopped and off < n:
        ps.flag("count_mismatch" if _only_records(ps, off) else "trailing_bytes")

    rcode = flags & RCODE_MASK
    if ps.edns is not None:
        rcode |= ps.edns.ext_rcode << EXT_RCODE_SHIFT
    if not flags & FLAG_QR and sections[0]:
        ps.flag("query_with_answers")
    return DnsMessage(
        txid=txid, flags=flags, rcode=rcode, qdcount=qd, ancount=an, nscount=ns, arcount=ar,
        questions=tuple(questions), answers=tuple(sections[0]), authority=tuple(sections[1]),
        additional=tuple(sections[2]), edns=ps.edns, anomalies=tuple(ps.anomalies),
    )


def _only_records(ps: _Parser, off: int) -> bool:
    """True when the bytes from ``off`` to the end are whole resource records."""
    n = len(ps.data)
    probe = _Parser(ps.data)  # separate anomaly list: these records are not reported
    while off < n:
        try:
            _rr, off = probe.rr(off)
        except (_Truncated, _BadName):
            return False
    return True


def _load_native() -> Any:
    """The C parser configured with these classes, or None (not built, or
    ``ANALYZER_PURE_PYTHON=1``)."""
    from analyzer.speedups import optional

    cdns = optional("_cdns")
    if cdns is not None:
        cdns.configure(DnsMessage, DnsQuestion, DnsRR, SoaData, Edns, DecodeError)
    return cdns


_native = _load_native()
