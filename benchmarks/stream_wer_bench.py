"""Streaming against batch word error rate, and what the previous finals' text in the prompt does to it.

The streaming session cuts speech at pauses and decodes each piece on its own; a batch transcription
hears the whole file. This benchmark runs :class:`~voxserve.stt.session.StreamingSession` in this
process with the real Silero VAD and the real Whisper engine, answering each final decode at once (so
it measures what the server's finals say, not when), on three sets built from ``../shared/speech_dev``:

* ``files``: each recording as its own stream;
* ``paused``: each recording of 4 s or more with every pause inside it (VAD below threshold for
  ``--min-pause-ms``) stretched to ``--pause-s`` of silence, like a speaker's rhetorical pauses;
* ``conversation``: all recordings in one stream, ``--gap-s`` of silence apart (unrelated turns).

For each ``context_max_gap_s`` (``SessionConfig``: the previous finals' text goes into the prompt of
an utterance starting at most that long after the last final) it prints corpus WER per set beside the
batch WER of the same files (the engine on each whole file), and the difference in points.

Measured 2026-12-06 (2 cores, other work running; WER stream / batch, + points):

=================  ===================  ====================  ===================  ====================
context            files                paused (>= 300 ms)    paused (>= 150 ms)   conversation
=================  ===================  ====================  ===================  ====================
text, always       0.090 / 0.090 +0.0   0.106 / 0.088 +1.8    0.223 / 0.088 +13.6  0.104 / 0.090 +1.3
none (gap 0)       0.100 / 0.090 +1.0                         0.201 / 0.088 +11.4  0.124 / 0.090 +3.3
audio + prefix     0.077 / 0.090 -1.3   0.136 / 0.088 +4.8    0.161 / 0.088 +7.3   0.154 / 0.090 +6.4
=================  ===================  ====================  ===================  ====================

Measured 2026-12-07 (2 cores, idle; ``--min-pause-ms 300``), the earlier finals' audio heard again
(``context_audio_s``: the server's default 10 s, across pauses up to 2.5 s; see
:mod:`voxserve.stt.context`), text context always:

==================  ===================  ====================  ====================
audio s : gap s     files                paused (>= 300 ms)    conversation
==================  ===================  ====================  ====================
0 (before)          0.110 / 0.094 +1.6   0.121 / 0.095 +2.6    0.104 / 0.094 +1.0
10 : 2.5 (default)  0.084 / 0.094 -1.0   0.106 / 0.095 +1.1    0.107 / 0.094 +1.3
10 : 1.5                                 0.117 / 0.095 +2.2    0.110 / 0.094 +1.7
20 : 2.5                                 0.106 / 0.095 +1.1    0.104 / 0.094 +1.0
==================  ===================  ====================  ====================

Runs of the same settings differ by about 0.3 points (CTranslate2 on 2 threads is not bit-exact).
``--context-audio 0:0,10:2.5`` compares them.

"audio + prefix" (tried, not built): the previous final's audio (<= 10 s) before the utterance, 0.3 s
apart, with its text as Whisper's ``prefix``, and the prefix cut from the result (decoded alone when
the result does not continue the prefix). It helps a pause inside a word-by-word sentence and hurts
everything else, so the default stays the text of the previous finals, always. Most errors left
are the first words after a pause ("tore down" heard as "toward down" after "A severe storm.").

Usage: python benchmarks/stream_wer_bench.py [--gaps inf,0,1,2] [--context-audio 0:0,10:2.5] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.stt_bench import load16k  # noqa: E402
from tests.speech_dev import Utterance, utterances  # noqa: E402
from tests.stream_speech import RATE, pauses_stretched, stream_finals  # noqa: E402
from tests.wer import errors  # noqa: E402

from voxserve.config import Settings  # noqa: E402
from voxserve.engines.base import TranscribeOptions  # noqa: E402
from voxserve.engines.vad import SileroVadModel  # noqa: E402
from voxserve.engines.whisper import WhisperEngine  # noqa: E402
from voxserve.stt.session import SessionConfig  # noqa: E402
from voxserve.stt.transcriber import session_config  # noqa: E402


def stream_text(engine: WhisperEngine, config: SessionConfig, vad: SileroVadModel, audio: np.ndarray) -> str:
    """The finals of one stream, joined."""
    return " ".join(stream_finals(engine, config, vad, audio))


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    total_e = total_n = 0
    for reference, hypothesis in pairs:
        e, n = errors(reference, hypothesis)
        total_e += e
        total_n += n
    return total_e / max(1, total_n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gaps", default="inf,0,1,2", help="context_max_gap_s values to compare")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="Whisper threads")
    parser.add_argument("--min-pause-ms", type=int, default=150)
    parser.add_argument("--pause-s", type=float, default=1.2)
    parser.add_argument("--gap-s", type=float, default=2.0)
    parser.add_argument("--sets", default="files,paused,conversation", help="which sets to run")
    parser.add_argument(
        "--context-audio",
        default=None,
        help="context_audio_s:context_audio_gap_s pairs to compare, e.g. 0:0,10:2.5 (default: the server's)",
    )
    parser.add_argument(
        "--show", action="store_true", help="print each stream's transcript beside the batch one"
    )
    args = parser.parse_args()

    engine = WhisperEngine("tiny.en", threads=args.threads)
    vad = SileroVadModel(1)
    items: list[Utterance] = utterances()
    audio = {u.path.name: load16k(u.path) for u in items}
    texts = {u.path.name: u.text for u in items}
    long_names = [n for n, a in audio.items() if len(a) >= 4 * RATE]
    sets: dict[str, list[tuple[list[str], np.ndarray]]] = {
        "files": [([n], a) for n, a in audio.items()],
        "paused": [
            ([n], pauses_stretched(audio[n], vad, args.min_pause_ms, args.pause_s)) for n in long_names
        ],
        "conversation": [
            (
                list(audio),
                np.concatenate(
                    [x for a in audio.values() for x in (a, np.zeros(int(args.gap_s * RATE), np.float32))]
                ),
            )
        ],
    }
    sets = {k: v for k, v in sets.items() if k in args.sets.split(",")}
    batch_text = {}
    for name, a in audio.items():
        _, segments = engine.transcribe(a, TranscribeOptions(language="en", beam_size=1))
        batch_text[name] = "".join(s.text for s in segments)
    batch = {
        key: corpus_wer([(texts[n], batch_text[n]) for names, _ in streams for n in names])
        for key, streams in sets.items()
    }
    base = session_config(Settings(ui_enabled=False), interim=False)
    print(
        f"tiny.en int8 beam 1, {args.threads} threads; {len(items)} recordings; "
        f"pauses >= {args.min_pause_ms} ms stretched to {args.pause_s} s; turns {args.gap_s} s apart"
    )
    print(
        f"{'text gap, audio s:gap':>22} "
        + " ".join(f"{k:>22}" for k in sets)
        + "   (WER stream / batch, +points)"
    )
    audio_pairs = (
        [(*(float(x) for x in pair.split(":")), math.inf)[:3] for pair in args.context_audio.split(",")]
        if args.context_audio
        else [(base.context_audio_s, base.context_audio_gap_s, base.context_audio_below_s)]
    )
    variants = [(float(g), *pair) for g in args.gaps.split(",") for pair in audio_pairs]
    for gap, audio_s, audio_gap_s, below_s in variants:
        config = dataclasses.replace(
            base,
            context_max_gap_s=gap,
            context_audio_s=audio_s,
            context_audio_gap_s=audio_gap_s,
            context_audio_below_s=below_s,
        )
        cells = []
        started = time.monotonic()
        for key, streams in sets.items():
            pairs = [
                (" ".join(texts[n] for n in names), stream_text(engine, config, vad, a))
                for names, a in streams
            ]
            if args.show:
                for (names, _), (reference, hypothesis) in zip(streams, pairs, strict=True):
                    e, n = errors(reference, hypothesis)
                    b = " ".join(batch_text[x] for x in names)
                    print(f"  {key} {e}/{n}: {hypothesis!r}\n    batch: {b!r}\n    truth: {reference!r}")
            w = corpus_wer(pairs)
            cells.append(f"{w:6.3f} / {batch[key]:5.3f} {100 * (w - batch[key]):+5.1f}")
        label = f"{gap:g}, {audio_s:g}:{audio_gap_s:g}:{below_s:g}"
        print(
            f"{label:>22} " + " ".join(f"{c:>22}" for c in cells) + f"   ({time.monotonic() - started:.0f} s)"
        )


if __name__ == "__main__":
    main()
