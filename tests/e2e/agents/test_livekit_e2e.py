"""LiveKit Agents' OpenAI plugin (``livekit-plugins-openai``) against a default ``voxserve serve``,
configured as its users configure it for OpenAI with only ``base_url`` and ``api_key`` changed
(DESIGN rule 13).

The plugin runs in ``.venv-agents`` (run_livekit.py); these tests judge what it handed the agent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e.agents.frameworks import (
    GAP_S,
    UTTERANCES,
    assert_each_transcribed,
    assert_no_errors,
    drive,
    server_wav_seconds,
    transcribe_pcm,
)
from tests.e2e.conftest import Server
from tests.speech_dev import by_name
from tests.timing import scaled
from tests.wer import errors, wer

pytestmark = pytest.mark.e2e

MAX_WER = 0.25
TEXTS = [
    "Hello, how can I help you today?",
    "The weather in Paris is sunny, with a high of twenty two degrees.",
]
LIVEKIT_RATE = 24000  # the plugin's TTS frames and its Realtime STT input are 24 kHz mono


def check_speech(server: Server, tmp: Path, run_pcm: str, texts: list[str]) -> None:
    heard = transcribe_pcm(server, Path(run_pcm).read_bytes(), LIVEKIT_RATE, tmp)
    assert wer(" ".join(texts), heard) <= 0.2, heard


@pytest.mark.parametrize(
    "options",
    [
        {},  # gpt-4o-mini-tts, voice ash, mp3, stream_format sse
        {"response_format": "pcm"},
        {"model": "tts-1"},  # stream_format audio
        {"model": "tts-1", "response_format": "pcm"},
    ],
    ids=["defaults", "pcm", "tts-1", "tts-1-pcm"],
)
def test_tts_synthesize_gives_24khz_speech(server: Server, tmp_path: Path, options: dict[str, str]) -> None:
    """``openai.TTS(base_url=…).synthesize(text)``: 24 kHz mono frames that say the text; with pcm
    (the bytes taken as 24 kHz as they come) as long as the server's own WAV of the same text."""
    run = drive("run_livekit.py", "tts", {"texts": TEXTS, **options}, tmp_path, 240, server)
    assert_no_errors(run)
    assert run["sample_rates"] == [LIVEKIT_RATE] and run["num_channels"] == [1], run.explain()
    assert all(r["bytes"] > 0 for r in run["requests"]), run.explain()
    check_speech(server, tmp_path, run["pcm_file"], TEXTS)
    if options.get("response_format") == "pcm":
        model = options.get("model", "gpt-4o-mini-tts")
        expected = sum(server_wav_seconds(server, t, "ash", model) for t in TEXTS)
        seconds = len(Path(run["pcm_file"]).read_bytes()) / 2 / LIVEKIT_RATE
        assert abs(seconds / expected - 1) <= 0.05, (seconds, expected)


@pytest.mark.parametrize("voice", ["alloy", "nova", "shimmer", "coral", "sage", "marin", "cedar"])
def test_tts_openai_voices_speak_english(server: Server, tmp_path: Path, voice: str) -> None:
    """Every OpenAI voice name a LiveKit agent may pick speaks an English sentence intelligibly."""
    text = "Your table for two is booked for seven thirty tonight."
    run = drive("run_livekit.py", "tts", {"texts": [text], "voice": voice}, tmp_path, 240, server)
    assert_no_errors(run)
    assert run["sample_rates"] == [LIVEKIT_RATE], run.explain()
    check_speech(server, tmp_path, run["pcm_file"], [text])


def test_tts_stream_through_stream_adapter(server: Server, tmp_path: Path) -> None:
    """``tts.StreamAdapter(tts=openai.TTS(base_url=…)).stream()`` fed an LLM's tokens, as an
    ``AgentSession`` does with a non-streaming TTS: every sentence is heard, at 24 kHz."""
    run = drive("run_livekit.py", "tts-stream", {"texts": TEXTS}, tmp_path, 240, server)
    assert_no_errors(run)
    assert run["sample_rates"] == [LIVEKIT_RATE] and run["num_channels"] == [1], run.explain()
    assert all(r["bytes"] > 0 for r in run["requests"]), run.explain()
    check_speech(server, tmp_path, run["pcm_file"], TEXTS)


@pytest.mark.parametrize("options", [{}, {"model": "whisper-1"}], ids=["defaults", "whisper-1"])
def test_stt_recognize(server: Server, tmp_path: Path, options: dict[str, str]) -> None:
    """``openai.STT(base_url=…).recognize(frame)``: defaults (``gpt-4o-mini-transcribe``) and
    ``whisper-1``."""
    run = drive(
        "run_livekit.py",
        "recognize",
        {"files": [str(by_name(n).path) for n in UTTERANCES], **options},
        tmp_path,
        180,
        server,
    )
    assert_no_errors(run)
    for name, final in zip(UTTERANCES, run["finals"], strict=True):
        u = by_name(name)
        e, n = errors(u.text, final["text"])
        assert e <= max(1, int(MAX_WER * n)), (name, final, run.explain())


@pytest.mark.parametrize(
    "options",
    [{"use_realtime": True}, {"model": "gpt-realtime-whisper"}, {"model": "gpt-live-transcribe"}],
    ids=["use_realtime", "gpt-realtime-whisper", "gpt-live-transcribe"],
)
def test_stt_stream_transcribes_every_turn(
    server: Server, tmp_path: Path, options: dict[str, object]
) -> None:
    """``openai.STT(base_url=…).stream()`` over the Realtime API: with ``use_realtime=True`` (server VAD,
    the plugin's turn_detection) and with each realtime-only model (no server turn detection: the
    plugin's Silero VAD commits each turn). Every turn gets a final; no error reaches the plugin."""
    job = {
        "files": [str(by_name(n).path) for n in UTTERANCES],
        "gap_s": GAP_S,
        "wait_s": scaled(20),
        **options,
    }
    run = drive("run_livekit.py", "stream", job, tmp_path, 180, server)
    assert_no_errors(run)
    assert_each_transcribed(run, [by_name(n) for n in UTTERANCES], MAX_WER)
