"""Build of the optional C extensions (everything else is configured in pyproject.toml).

``optional=True``: without a C compiler the install still succeeds and the analyzer uses its
numpy code (the reference); CI checks that the extension was built.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("analyzer._speedups", ["analyzer/_speedups.c"], optional=True, extra_compile_args=["-O2"]),
        # the flow table (analyzer/track/flows.py mirrored; see analyzer/track/ctable.py)
        Extension("analyzer._ctrack", ["analyzer/_ctrack.c"], optional=True, extra_compile_args=["-O2"]),
        # DNS messages (analyzer/decode/dns.py mirrored)
        Extension("analyzer._cdns", ["analyzer/_cdns.c"], optional=True, extra_compile_args=["-O2"]),
    ],
)
