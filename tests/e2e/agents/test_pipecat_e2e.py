"""pipecat's OpenAI services against a default ``voxserve serve``, configured as pipecat's users
configure them for OpenAI with only ``base_url`` and ``api_key`` changed (DESIGN rule 13).

The pipeline runs in ``.venv-agents`` (run_pipecat.py); these tests judge what reached its end.
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
from tests.wer import wer

pytestmark = pytest.mark.e2e

MAX_WER = 0.25
# One sentence each: pipecat sends a TTSSpeakFrame's sentences as separate requests.
TEXTS = [
    "Hello, how can I help you today?",
    "The weather in Paris is sunny, with a high of twenty two degrees.",
    "Your order has been shipped and should arrive on Tuesday.",
]
OPENAI_RATE = 24000  # what pipecat's OpenAITTSService asks for (response_format pcm) and labels frames


def listen_job(**extra: object) -> dict[str, object]:
    return {
        "files": [str(by_name(n).path) for n in UTTERANCES],
        "gap_s": GAP_S,
        "wait_s": scaled(20),
        **extra,
    }


@pytest.mark.parametrize("stop_secs", [0.5, 0.55, 0.6, 0.8])
def test_realtime_stt_with_silero_vad_transcribes_every_turn(
    server: Server, tmp_path: Path, stop_secs: float
) -> None:
    """``OpenAIRealtimeSTTService(base_url="ws://…/v1/realtime")``, defaults (model
    ``gpt-realtime-whisper``, ``turn_detection=False``: pipecat's VAD commits each turn)."""
    run = drive("run_pipecat.py", "realtime-stt", listen_job(stop_secs=stop_secs), tmp_path, 180, server)
    items = [by_name(n) for n in UTTERANCES]
    assert_no_errors(run)
    # An error event makes pipecat drop the socket and reconnect: the transcript on it is lost.
    assert len(run["connects"]) == 1, f"pipecat reconnected\n{run.explain()}"
    assert_each_transcribed(run, items, MAX_WER)


def test_stt_defaults_transcribe_every_turn(server: Server, tmp_path: Path) -> None:
    """``OpenAISTTService(base_url="http://…/v1")``, defaults (model ``gpt-transcribe``), one request
    per turn that Silero VAD (default VADParams) cuts."""
    job = listen_job()
    job["stop_secs"] = 0.5  # pipecat's VADParams default (0.2) cuts "eight of spades, four of clubs"
    run = drive("run_pipecat.py", "stt", job, tmp_path, 180, server)
    assert_no_errors(run)
    assert_each_transcribed(run, [by_name(n) for n in UTTERANCES], MAX_WER)


@pytest.mark.parametrize("voice", [None, "nova"])
def test_tts_speaks_each_text_at_24khz(server: Server, tmp_path: Path, voice: str | None) -> None:
    """``OpenAITTSService(base_url="http://…/v1")``, defaults (model ``gpt-4o-mini-tts``, voice
    ``alloy``) and ``nova``: every ``TTSSpeakFrame`` gives 24 kHz mono audio that says the text."""
    job: dict[str, object] = {"texts": TEXTS, "wait_s": scaled(60)}
    if voice:
        job["voice"] = voice
    run = drive("run_pipecat.py", "tts", job, tmp_path, 240, server)
    assert_no_errors(run)
    assert run["sample_rates"] == [OPENAI_RATE] and run["num_channels"] == [1], run.explain()
    assert all(r["bytes"] > 0 for r in run["requests"]), run.explain()
    pcm = Path(run["pcm_file"]).read_bytes()
    heard = transcribe_pcm(server, pcm, OPENAI_RATE, tmp_path)
    assert wer(" ".join(TEXTS), heard) <= 0.2, (heard, run.explain())
    # The bytes are 24 kHz audio: as long as the server's own WAV (whose header names its rate) of the
    # same texts. A 22.05 kHz stream taken for 24 kHz would be 8% short.
    expected = sum(server_wav_seconds(server, t, voice or "alloy", "gpt-4o-mini-tts") for t in TEXTS)
    seconds = len(pcm) / 2 / OPENAI_RATE
    assert abs(seconds / expected - 1) <= 0.05, (seconds, expected)
