"""benchmarks/peers_bench.py: the ratio table, its targets and the sums behind it (no servers)."""

from __future__ import annotations

import math
import os

from benchmarks.peers_bench import (
    TEXTS,
    Samples,
    pairs,
    partition,
    ratio,
    ratio_table,
    report,
    summarise,
    target_spec,
)
from benchmarks.procmem import memory, tree


def test_targets_follow_the_issue() -> None:
    assert target_spec("tts_first", [1, 2, 4]) == "1: ≤ 0.7; 2, 4: ≤ 0.5"
    assert target_spec("tts_total", [1, 2, 4]) == "1: ≤ 0.7; 2, 4: ≤ 0.8"
    assert target_spec("tts_first", [2, 4]) == "≤ 0.5"
    assert target_spec("stt_stream", [1, 2, 4]) == "≤ 0.5"
    assert target_spec("wer_batch", [1]) == "≤ 1"


def test_ratio_table_marks_each_cell_against_its_own_target() -> None:
    lines = ratio_table({"tts_first": {1: 0.65, 2: 0.6, 4: 0.5}}, [1, 2, 4])
    assert lines == [
        "| voxserve ÷ peer (target) | 1 client | 2 clients | 4 clients |",
        "|---|---|---|---|",
        "| TTS first audio (÷ wyoming-piper); target 1: ≤ 0.7; 2, 4: ≤ 0.5 | 0.65 ✓ | 0.60 ✗ | 0.50 ✓ |",
    ]


def test_missing_and_degenerate_ratios() -> None:
    assert ratio(0.0, 0.0) == 1.0
    assert ratio(0.1, 0.0) == math.inf
    assert math.isnan(ratio(math.nan, 1.0))
    lines = ratio_table({"wer_batch": {1: 0.5}}, [1, 2])
    assert lines[-1].endswith("| 0.50 ✓ | nan ? |")


def test_partition_gives_every_file_once_and_spreads_them() -> None:
    assert partition(list(range(7)), 3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert partition([1, 2], 4) == [[1], [2], [], []]


def test_pairs_are_long_options() -> None:
    assert pairs(data_dir="/d", beam_size="1") == ["--data-dir", "/d", "--beam-size", "1"]


def test_summary_ratios_are_ratios_of_medians() -> None:
    samples = Samples()
    for i in range(len(TEXTS)):
        samples.add_tts("voxserve", 1, [{"first": 0.2, "total": 0.5, "audio_s": 5.0}], i)
        samples.add_tts("wyoming-piper", 1, [{"first": 0.4, "total": 0.5, "audio_s": 5.0}], i)
    refs = {"a.wav": "one two three four", "b.wav": "five six"}
    samples.add_stt(
        "voxserve batch",
        1,
        [
            {"path": "a.wav", "latency": 1.0, "text": "one two three four"},
            {"path": "b.wav", "latency": 1.0, "text": "5 6"},
        ],
    )
    samples.add_stt(
        "voxserve stream",
        1,
        [
            {"path": "a.wav", "latency": 0.2, "text": "one two three"},
            {"path": "b.wav", "latency": 0.2, "text": "five six"},
        ],
    )
    samples.add_stt(
        "wyoming-faster-whisper",
        1,
        [
            {"path": "a.wav", "latency": 2.0, "text": "one two three for"},
            {"path": "b.wav", "latency": 2.0, "text": "five six"},
        ],
    )
    samples.memory = {
        "voxserve idle": {"rss_mb": 300.0, "pss_mb": 250.0, "processes": 3.0},
        "wyoming-piper idle": {"rss_mb": 100.0, "pss_mb": 90.0, "processes": 1.0},
        "wyoming-faster-whisper idle": {"rss_mb": 200.0, "pss_mb": 190.0, "processes": 1.0},
    }
    samples.cold = {"voxserve": {"first": 0.5, "total": 2.0}}
    summary = summarise(samples, refs, [1])
    assert summary["ratios"]["tts_first"] == {"1": 0.5}
    assert summary["ratios"]["tts_total"] == {"1": 1.0}
    assert summary["ratios"]["stt_batch"] == {"1": 0.5}
    assert summary["ratios"]["stt_stream"] == {"1": 0.1}
    assert summary["ratios"]["wer_batch"] == {"1": 0.0}  # "5 6" is "five six"; the peer wrote "for"
    assert summary["ratios"]["wer_stream"] == {"1": 1.0}  # one word lost against one word wrong
    assert summary["raw"]["TTS voxserve, 1 client(s)"]["rtf"] == 0.1
    text = "\n".join(report(summary, [1]))
    assert "| TTS total time (÷ wyoming-piper); target ≤ 0.7 | 1.00 ✗ |" in text
    assert (
        "| voxserve ÷ both peers, idle (target: voxserve ≤ 600 MB idle) | 1.00 (300 ÷ 300 MB) | | |" in text
    )


def test_memory_of_this_process() -> None:
    mine = memory(os.getpid())
    assert mine["processes"] == len(list(tree(os.getpid()))) >= 1
    assert mine["rss_mb"] > 1
