"""Loading saved results (JSON and JSONL) and merging several (merge.py)."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from analyzer.report.merge import load_result, merge_documents, read_view, wireshark_filters


def doc(path: str, verdict_id: str, frame: int, flow_id: str = "f-1") -> dict[str, Any]:
    return {
        "schema": "analyzer.report/1",
        "tool": {"name": "analyzer", "version": "0.1.0"},
        "inputs": [{"path": path, "packets": 10, "linktype": "EN10MB"}],
        "verdicts": [{
            "id": verdict_id, "technique": "rst_injection", "trigger": "sni",
            "target": "whatsapp", "proto": "tcp", "client": "10.0.0.2:1", "server": "1.2.3.4:443",
            "domain": "g.whatsapp.net", "confidence": 0.9, "first_ts": 1.0, "last_ts": 2.0,
            "signals": ["ttl_mismatch"], "related": [verdict_id], "flow_id": flow_id,
            "evidence": [{"frame": frame, "ts": 1.5, "input": 0, "reason": "r"}],
            "packets": [{"frame": frame, "input": 0, "dir": "s2c", "summary": "RST"}],
        }],
        "flows": [{"id": flow_id, "input": 0, "target": "whatsapp", "outcome": "interfered"}],
        "stats": {"packets": 10, "decoded": 9, "skipped": {"truncated": 1}, "flows": 1,
                  "seconds": 0.5},
    }


def test_merge_rebases_inputs_and_sums_stats() -> None:
    a, b = doc("a.pcap", "v-1", 3), doc("b.pcap", "v-2", 5)
    a["inputs"].append({"path": "a2.pcap"})
    b["stats"]["skipped"]["bad_checksum"] = 2
    b["stats"]["dns_transactions"] = 4
    before = copy.deepcopy([a, b])
    merged = merge_documents([a, b])
    assert [a, b] == before  # inputs untouched
    assert [i["path"] for i in merged["inputs"]] == ["a.pcap", "a2.pcap", "b.pcap"]
    assert merged["verdicts"][1]["evidence"][0]["input"] == 2
    assert merged["verdicts"][1]["packets"][0]["input"] == 2
    assert [f["input"] for f in merged["flows"]] == [0, 2]
    assert merged["stats"] == {"packets": 20, "decoded": 18, "flows": 2, "seconds": 1.0,
                               "skipped": {"truncated": 2, "bad_checksum": 2},
                               "dns_transactions": 4}
    assert merged["schema"] == "analyzer.report/1"
    assert merged["tool"] == {"name": "analyzer", "version": "0.1.0"}
    view = read_view(merged)
    assert wireshark_filters(view.verdicts[1]) == [(2, "frame.number in {5}")]


def test_merge_keeps_ids_unique_and_references_follow() -> None:
    merged = merge_documents([doc("a.pcap", "v-1", 3), doc("a.pcap", "v-1", 3),
                              doc("a.pcap", "v-1", 3)])
    ids = [v["id"] for v in merged["verdicts"]]
    assert ids == ["v-1", "d2-v-1", "d3-v-1"]
    assert merged["verdicts"][1]["related"] == ["d2-v-1"]
    assert [f["id"] for f in merged["flows"]] == ["f-1", "d2-f-1", "d3-f-1"]
    assert merged["verdicts"][2]["flow_id"] == "d3-f-1"


def test_merge_of_nothing_and_of_junk() -> None:
    empty = merge_documents([])
    assert empty["schema"] == "analyzer.report/1" and empty["verdicts"] == []
    junk = merge_documents([{"verdicts": [{"evidence": [{"frame": 1}]}]}, {"inputs": None}])
    assert junk["verdicts"][0]["evidence"][0]["input"] == 0


def test_load_json_document(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    original = doc("a.pcap", "v-1", 3)
    path.write_text(json.dumps(original))
    assert load_result(str(path)) == original


def test_load_jsonl_stream(tmp_path: Path) -> None:
    original = doc("a.pcap", "v-1", 3)
    lines = [dict(v, type="verdict") for v in original["verdicts"]]
    lines += [dict(f, type="flow") for f in original["flows"]]
    lines.append({"type": "summary", "schema": original["schema"], "tool": original["tool"],
                  "inputs": original["inputs"], "stats": original["stats"]})
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    assert load_result(str(path)) == original


def test_load_jsonl_single_line_and_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"type": "verdict", "id": "v-9"}) + "\n")
    loaded = load_result(str(path))
    assert [v["id"] for v in loaded["verdicts"]] == ["v-9"] and loaded["inputs"] == []


@pytest.mark.parametrize("content", ["[1, 2]", "{\"type\": \"verdict\"}\nnot json\n", "\n"])
def test_load_rejects_non_results(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="bad.json"):
        load_result(str(path))
