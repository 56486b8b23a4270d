"""DNS message decoder on literal bytes, including hostile ones."""

from __future__ import annotations

import random
import struct

import pytest

from analyzer.decode.dns import (
    ANOMALIES,
    RCODE_NXDOMAIN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    TYPE_MX,
    TYPE_NS,
    TYPE_PTR,
    TYPE_SOA,
    TYPE_TXT,
    DnsMessage,
    escape_label,
    parse_dns,
)
from analyzer.status import DecodeError

QR_RD_RA = 0x8180
QUERY_RD = 0x0100


def header(
    txid: int = 0x1234, flags: int = QR_RD_RA, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!HHHHHH", txid, flags, qd, an, ns, ar)


def name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(lab)]) + lab for lab in labels) + b"\x00"


def ptr(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


def question(qname: bytes, qtype: int = TYPE_A, qclass: int = 1) -> bytes:
    return qname + struct.pack("!HH", qtype, qclass)


def rr(owner: bytes, rtype: int, rdata: bytes, ttl: int = 300, rclass: int = 1) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


QNAME = name(b"www", b"Example", b"com")  # at offset 12
Q = question(QNAME)
ANSWER_A = rr(ptr(12), TYPE_A, bytes([93, 184, 216, 34]), ttl=60)


def simple_response() -> bytes:
    return header(an=1) + Q + ANSWER_A


def rich_response() -> bytes:
    """Every decoded type, compression in owners and rdata, an OPT record."""
    body = Q
    answers = [
        rr(ptr(12), TYPE_CNAME, b"\x03cdn" + ptr(16)),  # cdn.example.com
        rr(ptr(12), TYPE_A, bytes([1, 2, 3, 4])),
        rr(ptr(12), TYPE_AAAA, bytes(15) + b"\x01"),
        rr(ptr(12), TYPE_MX, struct.pack("!H", 10) + b"\x04mail" + ptr(16)),
        rr(ptr(12), TYPE_TXT, b"\x05hello\x03a.b"),
        rr(name(b"4", b"3", b"2", b"1", b"in-addr", b"arpa"), TYPE_PTR, ptr(12)),
        rr(ptr(12), 99, b"\xde\xad"),
    ]
    authority = [
        rr(ptr(16), TYPE_NS, b"\x03ns1" + ptr(16)),
        rr(
            ptr(16),
            TYPE_SOA,
            b"\x03ns1"
            + ptr(16)
            + b"\x05admin"
            + ptr(16)
            + struct.pack("!IIIII", 2024010101, 7200, 3600, 1209600, 300),
        ),
    ]
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, (1 << 24) | 0x8000, 0)
    body += b"".join(answers) + b"".join(authority) + opt
    return header(an=len(answers), ns=len(authority), ar=1) + body


def test_query_header_and_question() -> None:
    msg = parse_dns(header(txid=0xBEEF, flags=QUERY_RD) + Q)
    assert msg.txid == 0xBEEF
    assert not msg.qr and msg.rd and not msg.ra and msg.opcode == 0
    assert msg.question is not None
    assert msg.question.name == "www.example.com"
    assert msg.question.raw_name == "www.Example.com"
    assert msg.question.qtype == TYPE_A and msg.question.type_name == "A"
    assert msg.answers == () and msg.anomalies == ()


def test_simple_response_with_compression() -> None:
    msg = parse_dns(simple_response())
    assert msg.qr and msg.ra and msg.rcode == 0
    (a,) = msg.answers
    assert a.name == "www.example.com" and a.raw_name == "www.Example.com"
    assert a.rtype == TYPE_A and a.ttl == 60 and a.address == bytes([93, 184, 216, 34])
    assert a.value == "93.184.216.34"
    assert msg.anomalies == ()


def test_rich_response_all_types() -> None:
    msg = parse_dns(rich_response())
    assert msg.anomalies == ()
    by_type = {r.rtype: r for r in msg.answers}
    assert by_type[TYPE_CNAME].target == "cdn.example.com"
    assert by_type[TYPE_A].value == "1.2.3.4"
    assert by_type[TYPE_AAAA].value == "::1"
    assert by_type[TYPE_MX].preference == 10 and by_type[TYPE_MX].target == "mail.example.com"
    assert by_type[TYPE_MX].value == "10 mail.example.com"
    assert by_type[TYPE_TXT].rdata == b"\x05hello\x03a.b"
    assert by_type[TYPE_PTR].name == "4.3.2.1.in-addr.arpa"
    assert by_type[TYPE_PTR].target == "www.example.com"
    assert by_type[99].value == "dead" and by_type[99].type_name == "TYPE99"
    ns, soa = msg.authority
    assert ns.target == "ns1.example.com"
    assert soa.soa is not None
    assert soa.soa.mname == "ns1.example.com" and soa.soa.rname == "admin.example.com"
    assert soa.soa.serial == 2024010101 and soa.soa.minimum == 300
    assert msg.additional == ()
    assert msg.edns is not None
    assert msg.edns.udp_size == 1232 and msg.edns.do and msg.edns.ext_rcode == 1
    assert msg.rcode == 1 << 4  # extended RCODE bits above the header's


def test_nxdomain_and_no_question() -> None:
    msg = parse_dns(header(flags=QR_RD_RA | RCODE_NXDOMAIN) + Q)
    assert msg.rcode == RCODE_NXDOMAIN
    empty = parse_dns(header(qd=0))
    assert empty.question is None and empty.anomalies == ()


def test_name_escaping() -> None:
    weird = name(b"a.b", b"c\\d", b"sp ace", b"\x00\x07\xff", b"UP")
    msg = parse_dns(header(flags=QUERY_RD) + question(weird))
    assert msg.question is not None
    assert msg.question.raw_name == "a\\.b.c\\\\d.sp\\032ace.\\000\\007\\255.UP"
    assert msg.question.name == "a\\.b.c\\\\d.sp\\032ace.\\000\\007\\255.up"
    assert escape_label(b"\x1b[31m") == "\\027[31m"


def test_root_name() -> None:
    msg = parse_dns(header(flags=QUERY_RD) + question(b"\x00", 2))
    assert msg.question is not None and msg.question.name == "."


@pytest.mark.parametrize(
    "bad_qname",
    [
        ptr(12),  # points at itself
        b"\x01a" + ptr(12),  # loops back to its own start
        b"\x01a" + ptr(14),  # forward (to itself)
        ptr(40),  # forward, beyond
        ptr(2),  # into the header
        b"\x41abc\x00",  # extended label type 0x40
        b"\x81abc\x00",  # reserved label type 0x80
        b"".join(b"\x3f" + b"x" * 63 for _ in range(4)) + b"\x00",  # 257 octets > 255
    ],
)
def test_hostile_question_names(bad_qname: bytes) -> None:
    with pytest.raises(DecodeError) as exc:
        parse_dns(header(flags=QUERY_RD) + question(bad_qname))
    assert exc.value.reason == "dns_malformed"


def test_pointer_chain_loop_in_answer_is_anomaly() -> None:
    # Answer owner at offset 33: label 'a' then pointer to 33 (itself) -> loop.
    data = header(an=2) + Q + ANSWER_A
    off = len(data)
    data += b"\x01a" + ptr(off) + struct.pack("!HHIH", 1, 1, 0, 4) + b"\x01\x01\x01\x01"
    msg = parse_dns(data)
    assert "bad_name" in msg.anomalies
    assert len(msg.answers) == 1  # the good one is kept


def test_two_pointers_pointing_at_each_other() -> None:
    # Two names that point at each other: the second points back (allowed) to the first,
    # which points forward (refused) -> bad, never a hang.
    base = len(header(an=2) + Q)
    first = ptr(base + 16)  # forward pointer to the second owner
    a1 = first + struct.pack("!HHIH", 1, 1, 0, 4) + b"\x01\x01\x01\x01"
    a2 = ptr(base) + struct.pack("!HHIH", 1, 1, 0, 4) + b"\x02\x02\x02\x02"
    assert len(a1) == 16
    msg = parse_dns(header(an=2) + Q + a1 + a2)
    assert "bad_name" in msg.anomalies and msg.answers == ()


def test_max_length_name_ok_and_label_63() -> None:
    # 3 * 64 + 62 + 1 = 255 octets: the longest legal name.
    labels = [b"x" * 63] * 3 + [b"y" * 61]
    msg = parse_dns(header(flags=QUERY_RD) + question(name(*labels)))
    assert msg.question is not None and len(msg.question.name) == 63 * 3 + 61 + 3


def test_lying_counts() -> None:
    more = parse_dns(header(an=3) + Q + ANSWER_A)
    assert "count_mismatch" in more.anomalies and len(more.answers) == 1
    fewer = parse_dns(header(an=1) + Q + ANSWER_A + ANSWER_A)
    assert "count_mismatch" in fewer.anomalies and len(fewer.answers) == 1
    garbage = parse_dns(simple_response() + b"\x07\x07\x07")
    assert garbage.anomalies == ("trailing_bytes",)
    qd_more = parse_dns(header(qd=2, an=0) + Q)
    assert "count_mismatch" in qd_more.anomalies


def test_truncated_rr_and_bad_rdata() -> None:
    trunc = parse_dns(simple_response()[:-2])
    assert trunc.anomalies == ("truncated_rr",) and trunc.answers == ()
    bad_a = rr(ptr(12), TYPE_A, b"\x01\x02\x03\x04\x05")
    msg = parse_dns(header(an=2) + Q + bad_a + ANSWER_A)
    assert "bad_rdata" in msg.anomalies
    assert len(msg.answers) == 2 and msg.answers[0].address is None
    assert msg.answers[1].value == "93.184.216.34"
    # a CNAME whose name runs past RDLENGTH
    bad_cname = ptr(12) + struct.pack("!HHIH", TYPE_CNAME, 1, 0, 2) + b"\x03abc\x00"
    assert "bad_rdata" in parse_dns(header(an=1) + Q + bad_cname).anomalies


def test_opt_anomalies_and_flags() -> None:
    opt = b"\x00" + struct.pack("!HHIH", 41, 512, 0, 0)
    two = parse_dns(header(ar=2) + Q + opt + opt)
    assert "multiple_opt" in two.anomalies
    misplaced = parse_dns(header(an=1) + Q + opt)
    assert "opt_misplaced" in misplaced.anomalies
    z = parse_dns(header(flags=QR_RD_RA | 0x0040) + Q)
    assert "z_bit_set" in z.anomalies
    q_ans = parse_dns(header(flags=QUERY_RD, an=1) + Q + ANSWER_A)
    assert "query_with_answers" in q_ans.anomalies
    for a in (two, misplaced, z, q_ans):
        assert set(a.anomalies) <= set(ANOMALIES)


def test_short_header() -> None:
    for n in range(12):
        with pytest.raises(DecodeError):
            parse_dns(simple_response()[:n])


def _parse_or_error(data: bytes) -> None:
    try:
        msg = parse_dns(data)
    except DecodeError as exc:
        assert exc.reason.startswith("dns_")
        return
    assert isinstance(msg, DnsMessage)
    assert set(msg.anomalies) <= set(ANOMALIES)
    for r in msg.answers + msg.authority + msg.additional:
        assert isinstance(r.value, str)


def test_truncation_at_every_byte() -> None:
    for data in (simple_response(), rich_response()):
        for n in range(len(data) + 1):
            _parse_or_error(data[:n])


def test_random_bytes_never_crash() -> None:
    rng = random.Random(20261128)
    for _ in range(5000):
        n = rng.randrange(0, 300)
        _parse_or_error(bytes(rng.randrange(256) for _ in range(n)))


def test_random_mutations_never_crash() -> None:
    rng = random.Random(53)
    base = rich_response()
    for _ in range(5000):
        data = bytearray(base)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        _parse_or_error(bytes(data))


def test_dense_pointer_soup_terminates() -> None:
    # Every byte after the header is a pointer octet: many jumps, never a hang.
    data = header(an=5) + bytes([0xC0, 0x0C] * 200)
    _parse_or_error(data)
    data = header(an=5) + Q + b"".join(ptr(12 + 2 * i) for i in range(100))
    _parse_or_error(data)


def test_nested_compression_chain() -> None:
    # Answer 1 is a CNAME whose target is "cdn" + pointer to "example.com" (offset 16);
    # answer 2's owner points at that target, i.e. a pointer to a name holding a pointer.
    data = header(an=2) + Q
    cname_rdata_at = len(data) + 2 + 10  # owner pointer (2) + fixed part (10)
    data += rr(ptr(12), TYPE_CNAME, b"\x03cdn" + ptr(16))
    data += rr(ptr(cname_rdata_at), TYPE_A, bytes([9, 9, 9, 9]))
    msg = parse_dns(data)
    assert msg.anomalies == ()
    assert msg.answers[1].name == "cdn.example.com"
    assert msg.answers[1].value == "9.9.9.9"
