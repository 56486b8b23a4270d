"""Docs stay true: generated references equal the code; the README's commands exist."""
from __future__ import annotations

from pathlib import Path

from analyzer.vocabulary import all_signals, detectors_markdown, markdown

ROOT = Path(__file__).resolve().parents[2]


def test_vocabulary_doc_is_current() -> None:
    assert (ROOT / "docs" / "vocabulary.md").read_text() == markdown(), \
        "run: python -m analyzer.vocabulary > docs/vocabulary.md"


def test_detectors_doc_is_current() -> None:
    assert (ROOT / "docs" / "detectors.md").read_text() == detectors_markdown(), \
        "run: python -m analyzer.vocabulary detectors > docs/detectors.md"


def test_signal_ids_are_short_identifiers() -> None:
    for s in all_signals():
        assert s.replace("_", "").isalnum() and s == s.lower(), s
