"""benchmarks/stt_bench.py: the playlist each concurrent stream plays, and the latencies it yields."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks.stt_bench import latencies, playlist


def test_a_playlist_plays_every_file_once_from_its_first_with_a_gap_after_each() -> None:
    audios = [np.full(16000 * (i + 1), i + 1, np.float32) for i in range(3)]  # 1, 2 and 3 s long
    regions = [[(0.1, 0.9)], [(0.2, 1.5)], [(0.5, 1.0), (1.5, 2.5)]]
    audio, spans = playlist(audios, regions, first=1, gap_s=1.0)
    # File 1 (2 s), a gap, file 2 (3 s), a gap, file 0 (1 s), a gap.
    assert audio.size == 16000 * (2 + 1 + 3 + 1 + 1 + 1)
    assert audio[0] == 2 and audio[16000 * 3] == 3 and audio[16000 * 7] == 1
    assert not audio[16000 * 2 : 16000 * 3].any()
    flat = [t for span in spans for t in span]
    assert flat == pytest.approx([0.2, 1.5, 3.5, 4.0, 4.5, 5.5, 7.1, 7.9])


def test_each_region_takes_the_first_final_after_its_end() -> None:
    def result(end: float, final: bool) -> dict[str, object]:
        return {"is_final": final, "result_end_time": end}

    events = [(1.0, result(0.9, False)), (2.0, result(1.5, True)), (6.0, result(5.5, True))]
    finals, _ = latencies(events, [(0.2, 1.5), (4.5, 5.5)])
    assert finals == pytest.approx([0.5, 0.5])
