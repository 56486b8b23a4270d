"""Build of the optional compiled code (everything else is configured in pyproject.toml).

Two kinds, both optional: without a C compiler (or with ``ANALYZER_COMPILE=0``) the install
still succeeds and the same Python source runs interpreted, with the same results.

- Three hand-written C extensions: the pcap/pcapng record scan (``_speedups.c``), the flow
  table (``_ctrack.c``, mirroring ``analyzer/track/flows.py``) and the DNS parser
  (``_cdns.c``, mirroring ``analyzer/decode/dns.py``).
- The analysis itself (decoders, trackers, identification, detectors, verdicts, JSON report)
  compiled by mypyc from its type-annotated Python source, which stays the only source: no
  module is rewritten for it. ``COMPILED`` lists the modules; the ones left out run
  interpreted (the CLI, the readers and live capture, the numpy path, report formats other
  than JSON, status.py).

CI checks that everything was built (.ci/run). ``ANALYZER_PURE_PYTHON=1`` at run time makes
an installed analyzer ignore all of it (analyzer/__init__.py), for comparison.
"""
from __future__ import annotations

import importlib.machinery
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

C_EXTENSIONS = [
    Extension("analyzer._speedups", ["analyzer/_speedups.c"], optional=True, extra_compile_args=["-O2"]),
    # the flow table (analyzer/track/flows.py mirrored; see analyzer/track/ctable.py)
    Extension("analyzer._ctrack", ["analyzer/_ctrack.c"], optional=True, extra_compile_args=["-O2"]),
    # DNS messages (analyzer/decode/dns.py mirrored)
    Extension("analyzer._cdns", ["analyzer/_cdns.c"], optional=True, extra_compile_args=["-O2"]),
]

# Compiled by mypyc: every module a packet, flow or DNS transaction passes through. Not:
# status.py (exception classes with class-level defaults) and sources/ (the readers work per
# 4 MiB chunk, the record scan is in C, and live capture subclasses their Batch).
COMPILED = [
    "analyzer/config.py",
    "analyzer/model.py",
    "analyzer/pipeline.py",
    "analyzer/verdict.py",
    "analyzer/decode/__init__.py",
    "analyzer/decode/dns.py",
    "analyzer/decode/http.py",
    "analyzer/decode/packet.py",
    "analyzer/decode/quic.py",
    "analyzer/decode/tls.py",
    "analyzer/detect/__init__.py",
    "analyzer/detect/blockpage.py",
    "analyzer/detect/context.py",
    "analyzer/detect/dns_injection.py",
    "analyzer/detect/drop.py",
    "analyzer/detect/icmp.py",
    "analyzer/detect/residual.py",
    "analyzer/detect/rst_injection.py",
    "analyzer/detect/throttling.py",
    "analyzer/identify/__init__.py",
    "analyzer/identify/fep.py",
    "analyzer/identify/ipsec.py",
    "analyzer/identify/l2tp.py",
    "analyzer/identify/openvpn.py",
    "analyzer/identify/pptp.py",
    "analyzer/identify/quic.py",
    "analyzer/identify/sstp.py",
    "analyzer/identify/tls.py",
    "analyzer/identify/tor.py",
    "analyzer/identify/whatsapp.py",
    "analyzer/identify/wireguard.py",
    "analyzer/report/document.py",
    "analyzer/track/__init__.py",
    "analyzer/track/ctable.py",
    "analyzer/track/dns.py",
    "analyzer/track/facts.py",
    "analyzer/track/flows.py",
    "analyzer/track/reassembly.py",
]
# One shared library for all of them: the top-level module analyzer_native__mypyc (mypyc sets a
# compiled package's __path__ wrongly when its library sits inside the package)
GROUP = "analyzer_native"


def compiled_extensions() -> list[Extension]:
    if os.environ.get("ANALYZER_COMPILE", "1") == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # built without build isolation and without mypy: run interpreted
        print("analyzer: mypy/mypyc not available, the analysis will run interpreted",
              file=sys.stderr)
        return []
    # Type-checking here only guides compilation (CI runs mypy --strict separately). pip builds
    # in an isolated environment without the runtime dependencies (numpy, click, ...): their
    # types are then unknown (Any), which compiles to the same generic operations.
    options = ["--config-file", "", "--ignore-missing-imports", "--follow-imports=silent"]
    try:
        exts: list[Extension] = mypycify(options + COMPILED, opt_level="3", group_name=GROUP)
    except (Exception, SystemExit) as exc:  # mypyc refused: the source runs interpreted
        print(f"analyzer: not compiled by mypyc ({exc!r}); the analysis will run interpreted",
              file=sys.stderr)
        return []
    for ext in exts:
        ext.optional = True  # no C compiler: the interpreted source does the same work
    return exts


class BuildExt(build_ext):
    """build_ext that first deletes the extension files of an earlier build for modules this
    build does not compile (one taken out of COMPILED, an old group library): setuptools would
    put them in the wheel from build/lib, and in place Python would import one before its
    source. A stale mypyc shim fails at import, for want of its module in the new library."""

    def run(self) -> None:
        keep = {os.path.abspath(self.get_ext_fullpath(e.name)) for e in self.extensions}
        base = os.path.abspath("." if self.inplace else self.build_lib)
        suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
        stale = ([os.path.join(base, f) for f in os.listdir(base) if f.startswith(GROUP)]
                 if os.path.isdir(base) else [])  # (no build/lib yet: nothing left over)
        for root, _dirs, files in os.walk(os.path.join(base, "analyzer")):
            stale += [os.path.join(root, f) for f in files]
        for path in stale:
            if path.endswith(suffixes) and os.path.abspath(path) not in keep:
                print(f"analyzer: removing {path} (not built any more)", file=sys.stderr)
                os.remove(path)
        super().run()


setup(ext_modules=C_EXTENSIONS + compiled_extensions(), cmdclass={"build_ext": BuildExt})
