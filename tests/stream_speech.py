"""Real speech through the streaming session in-process: long pauses made from recordings, and the
finals of one stream. Shared by the engine test of streaming across pauses and
``benchmarks/stream_wer_bench.py``."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

from voxserve.engines.base import TranscribeOptions
from voxserve.engines.vad import SileroVadModel, VadStream
from voxserve.engines.whisper import WhisperEngine
from voxserve.stt.session import DecodeRequest, Final, SessionConfig, StreamingSession
from voxserve.stt.vad import FrameVad

RATE = 16000
CHUNK = 320  # 20 ms, as clients send

Audio = npt.NDArray[np.float32]


def pauses_stretched(audio: Audio, vad: SileroVadModel, min_pause_ms: int, pause_s: float) -> Audio:
    """``audio`` with each run of non-speech frames of at least ``min_pause_ms`` between speech
    lengthened to ``pause_s`` (the silence is inserted in the middle of the run): a speaker's
    rhetorical pauses, made from a recording whose transcript stays true."""
    stream = VadStream(vad)
    frame = FrameVad.frame_samples
    speech = [stream.process(audio[i : i + frame]) >= 0.5 for i in range(0, len(audio) - frame + 1, frame)]
    min_frames = max(1, math.ceil(min_pause_ms / 1000 * RATE / frame))
    cuts: list[int] = []
    i = 0
    seen_speech = False
    while i < len(speech):
        if speech[i]:
            seen_speech = True
            i += 1
            continue
        j = i
        while j < len(speech) and not speech[j]:
            j += 1
        if seen_speech and j < len(speech) and j - i >= min_frames:  # inside the speech, not at its ends
            cuts.append((i + j) // 2 * frame)
        i = j
    pieces: list[Audio] = []
    last = 0
    for cut in cuts:
        pieces += [audio[last:cut], np.zeros(int(pause_s * RATE), np.float32)]
        last = cut
    pieces.append(audio[last:])
    return np.concatenate(pieces)


def stream_finals(
    engine: WhisperEngine, config: SessionConfig, vad: SileroVadModel, audio: Audio
) -> list[str]:
    """The finals of one stream of ``audio`` fed in 20 ms chunks; each decode is answered as soon as
    it is asked for (what the finals say, not when), with the options the server's driver uses."""
    session = StreamingSession(config, FrameVad(VadStream(vad)))
    options = TranscribeOptions(language="en", beam_size=1)
    finals: list[str] = []

    def handle(events: list[object]) -> None:
        while events:
            event = events.pop(0)
            if isinstance(event, DecodeRequest):
                opts = dataclasses.replace(
                    options, prompt=event.prompt or None, word_timestamps=event.keep_from_s is not None
                )
                _, segments = engine.transcribe(event.audio, opts)
                events.extend(session.on_decode_result(event.request_id, list(segments)))
            elif isinstance(event, Final):
                finals.append(event.text)

    tail = np.zeros(RATE * 2, np.float32)  # the last utterance ends on silence, as in a live stream
    padded = np.concatenate([audio, tail])
    for i in range(0, len(padded), CHUNK):
        handle(list(session.feed(padded[i : i + CHUNK])))
    handle(list(session.finish()))
    return finals
