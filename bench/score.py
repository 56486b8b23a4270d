"""Score an analyzer JSON result against a generated capture's ground truth.

    python bench/score.py bench/out/mixed-1M.truth.json result.json

Prints, per kind of injected interference, how many were found (a verdict with the expected
technique on the same client ip:port and server ip:port), and the verdicts that match no
injected interference (false positives for this capture).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

KIND_TECHNIQUE = {
    "rst_injection": "rst_injection",
    "dns_injection": "dns_injection",
    "sni_drop": "drop",
    "ip_blackhole": "drop",
}


def endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("truth")
    ap.add_argument("result")
    a = ap.parse_args()
    truth = json.load(open(a.truth))["interference"]
    verdicts = json.load(open(a.result))["verdicts"]
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    used: set[str] = set()
    for t in truth:
        kind = t["kind"]
        total[kind] += 1
        c = endpoint(t["client"], t["client_port"])
        s = endpoint(t["server"], t["server_port"])
        hit = [v for v in verdicts if v["technique"] == KIND_TECHNIQUE.get(kind) and v["client"] == c and v["server"] == s]
        if hit:
            found[kind] += 1
            used.update(v["id"] for v in hit)
    for kind in sorted(total):
        print(f"{kind:15s} found {found[kind]:5d} of {total[kind]:5d}")
    extra = [v for v in verdicts if v["id"] not in used]
    print(f"verdicts matching no injected interference: {len(extra)}")
    for v in extra[:10]:
        print(f"  {v['technique']}/{v['trigger']} {v['client']} -> {v['server']} {v.get('domain')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
