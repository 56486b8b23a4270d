"""Tor (vanilla, no pluggable transport): a heuristic on the random TLS SNI. Never sure.

Rules
-----
* Tor clients put a made-up host name in the TLS SNI: ``www.`` + 4..25 random RFC 4648
  base32 characters (``a-z2-7``) + ``.com`` (Tor's ``tor_tls_new`` calls
  ``crypto_random_hostname(4, 25, "www.", ".com")``; relay certificates use the same
  generator with ``.net``, so ``.net`` is accepted too).
* The label must look random, because many real sites match the shape (www.google.com):
  it must contain a digit 2..7, or be >= 8 characters with no more than 25% vowels and a
  run of >= 4 consonants.  Random base32 labels contain no digit with probability
  (26/32)^n (44% for n=4, 8% for n=12), and some of those also fail the vowel test: such
  Tor connections are missed.
* The flow must be TLS with that SNI and no other known name: no HTTP Host, the SNI not
  among the DNS names resolved for the server address (Tor never resolves it; a browser
  normally does), and no browser ALPN (h2/http/1.1; Tor sends no ALPN).
* Confidence 0.45; +0.1 on 9001/9030 (default ORPort/DirPort), +0.05 on 443; +0.05 when the
  label has >= 2 digits and >= 8 characters; never above 0.6.
* ``handshake_answered``: as for TLS (ServerHello seen / nothing came back / other).

Sources: Tor source ``src/lib/tls/tortls.c`` / ``tortls_openssl.c`` and
``crypto_rand.c:crypto_random_hostname``; nDPI ``protocols/tor.c`` (``ndpi_is_ssl_tor``:
"www." names whose label has two separate digit groups, an impossible English bigram or no
common bigram; newer nDPI adds a relay address list); nDPI trace ``tor.pcap``.

Known false positives: real sites with short random-looking names
(``www.x5k2.com``-like), DGA malware domains.  Known false negatives: relays listed
by address only, bridges with pluggable transports (obfs4 -> fep-like, meek/snowflake ->
ordinary TLS/WebRTC), digit-free random labels.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, Optional

from analyzer.identify import tls as _tls
from analyzer.model import FlowFacts, Identification, Target

_TOR_SNI: Final = re.compile(r"^www\.([a-z2-7]{4,25})\.(com|net)$")
_VOWELS: Final = frozenset("aeiou")
TOR_PORTS: Final = frozenset({9001, 9030})
BROWSER_ALPN: Final = frozenset({"h2", "http/1.1", "http/1.0", "h3"})


def _consonant_run(label: str) -> int:
    best = run = 0
    for ch in label:
        if ch.isalpha() and ch not in _VOWELS:
            run += 1
            best = max(best, run)
        else:
            run = 0
    return best


@lru_cache(maxsize=4096)  # pure; SNIs repeat across flows
def tor_like_sni(name: str) -> Optional[str]:
    """The random label when ``name`` has Tor's fake-SNI shape and looks random."""
    m = _TOR_SNI.match(name.strip().lower())
    if m is None:
        return None
    label = m.group(1)
    digits = sum(ch.isdigit() for ch in label)
    if digits:
        return label
    letters = [ch for ch in label if ch.isalpha()]
    vowels = sum(ch in _VOWELS for ch in letters)
    if len(label) >= 8 and vowels <= 0.25 * len(letters) and _consonant_run(label) >= 4:
        return label
    return None


def identify_tor(facts: FlowFacts) -> Optional[Identification]:
    if not facts.sni or facts.http_host:
        return None
    label = tor_like_sni(facts.sni)
    if label is None:
        return None
    sni = facts.sni.strip().lower().rstrip(".")
    if any(n.strip().lower().rstrip(".") == sni for n in facts.dns_names):
        return None  # the name was resolved: a real site, not Tor's made-up name
    if BROWSER_ALPN & {a.lower() for a in facts.alpn}:
        return None
    found = _tls.detect_tls(facts)
    if found is None:
        return None
    reasons = [f"SNI {facts.sni} has Tor's random 'www.<base32>.com' shape (heuristic)"]
    conf = 0.45
    if facts.server_port in TOR_PORTS:
        conf += 0.1
        reasons.append(f"port {facts.server_port} (Tor default ORPort/DirPort)")
    elif facts.server_port == 443:
        conf += 0.05
    digits = sum(ch.isdigit() for ch in label)
    if digits >= 2 and len(label) >= 8:
        conf += 0.05
    if not facts.dns_names:
        reasons.append("no DNS resolution seen for the server")
    reasons.append("no ALPN")
    return Identification(Target.TOR, "tor", round(min(conf, 0.6), 2), tuple(reasons), found[2])
