"""Drive the web UI in headless Debian Chromium with a fake microphone (shared by tests and benchmarks).

Chromium is Debian's ``/usr/bin/chromium`` (``.ci/run`` installs it), driven by Playwright's sync API;
Playwright never downloads a browser here. The fake microphone plays a 16-bit WAV made from a
``../shared/speech_dev`` recording with silence around it, from the start, when the page opens the
microphone (an init script records that moment, ``performance.now()``, as ``window.__voxMicOpenedAt``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tests.e2e.conftest import Server, start_server
from tests.speech_dev import Utterance
from tests.timing import scaled

CHROMIUM = Path(os.environ.get("VOXSERVE_CHROMIUM", "/usr/bin/chromium"))
MIC_RATE = 44100  # what Chromium's fake capture device runs at: no resampling there
LEAD_SILENCE_S = 1.0
# The fake device loops the file: room for the last final first. A slower machine (a larger
# VOXSERVE_TEST_TIME_SCALE) gets more room, so the server can catch up before the words repeat.
TAIL_SILENCE_S = scaled(10.0)

# A small server: one TTS engine and one Whisper model keep start-up and CPU use down.
SERVER_ENV = {
    "VOXSERVE_ENGINES": '["piper"]',
    "VOXSERVE_PRELOAD_ENGINES": '["piper"]',
    "VOXSERVE_STT_MODELS": '["tiny.en"]',
    "VOXSERVE_UI_ENABLED": "true",
}

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]

# Records when the page's microphone stream opens (the fake device starts its file then) and when the
# transcript box first shows text, both on the page's own clock.
_INIT_SCRIPT = """
(() => {
  window.__voxMicOpenedAt = null;
  window.__voxFirstTextAt = null;
  const md = navigator.mediaDevices;
  if (md && md.getUserMedia) {
    const original = md.getUserMedia.bind(md);
    md.getUserMedia = async (constraints) => {
      const stream = await original(constraints);
      if (window.__voxMicOpenedAt === null) window.__voxMicOpenedAt = performance.now();
      return stream;
    };
  }
  setInterval(() => {
    if (window.__voxFirstTextAt !== null) return;
    const box = document.querySelector('#stt-transcript textarea');
    if (box && box.value.trim()) window.__voxFirstTextAt = performance.now();
  }, 10);
})();
"""


def start_ui_server(tmp: Path, *args: str) -> Server:
    return start_server(tmp, *args, env=SERVER_ENV)


def speech_onset_s(audio16k: np.ndarray) -> float:
    """Where speech starts in 16 kHz audio: the first Silero VAD frame at probability ≥ 0.5."""
    from voxserve.engines.vad import SileroVadModel, VadStream

    probs = VadStream(SileroVadModel(1)).probabilities(audio16k)
    for i, p in enumerate(probs):
        if p >= 0.5:
            return i * 512 / 16000
    raise ValueError("no speech found")


@dataclass
class FakeMic:
    path: Path
    speech_start_s: float
    """Start of speech in the file, seconds from its first sample."""
    duration_s: float


def make_fake_mic(utterance: Utterance, out: Path) -> FakeMic:
    """A 44.1 kHz 16-bit mono WAV: ``LEAD_SILENCE_S`` of silence, the recording, ``TAIL_SILENCE_S``."""
    from voxserve.audio.decode import decode_audio
    from voxserve.audio.resample import Resampler

    audio16k = decode_audio(utterance.path.read_bytes(), max_seconds=600)
    onset = speech_onset_s(audio16k)
    resampled = Resampler(16000, MIC_RATE).process(audio16k)
    full = np.concatenate(
        [
            np.zeros(int(LEAD_SILENCE_S * MIC_RATE), np.float32),
            resampled,
            np.zeros(int(TAIL_SILENCE_S * MIC_RATE), np.float32),
        ]
    )
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(MIC_RATE)
        w.writeframes((np.clip(full, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    return FakeMic(out, LEAD_SILENCE_S + onset, len(full) / MIC_RATE)


@dataclass
class Browser:
    """One Chromium process with one page; every request that leaves the server is recorded."""

    context: Any
    page: Any
    base_url: str
    outside_requests: list[str] = field(default_factory=list)

    def open_ui(self, timeout_s: float = 60) -> None:
        self.page.goto(f"{self.base_url}/ui/", wait_until="load", timeout=scaled_ms(timeout_s))
        self.page.wait_for_selector("#speak-button", timeout=scaled_ms(timeout_s))

    def mic_elapsed_s(self) -> float | None:
        """Seconds since the microphone opened (the fake device's file position, until it loops)."""
        value = self.page.evaluate(
            "() => window.__voxMicOpenedAt === null ? null : (performance.now() - window.__voxMicOpenedAt)"
        )
        return None if value is None else float(value) / 1000

    def mic_latency_s(self, speech_start_s: float) -> float | None:
        """Seconds from the start of speech to the first transcript text, or None if none yet."""
        opened, first = self.page.evaluate("() => [window.__voxMicOpenedAt, window.__voxFirstTextAt]")
        if opened is None or first is None:
            return None
        return float(first - opened) / 1000 - speech_start_s


def scaled_ms(seconds: float) -> float:
    """A nominal bound in seconds, scaled (tests/timing.py), in Playwright's milliseconds."""
    return scaled(seconds) * 1000


def chromium_missing_message() -> str | None:
    if not CHROMIUM.exists():
        return (
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; "
            ".ci/run does this), or point VOXSERVE_CHROMIUM at a Chromium binary"
        )
    return None


@contextlib.contextmanager
def browser(base_url: str, fake_mic: Path | None = None) -> Iterator[Browser]:
    """A fresh headless Chromium (own profile) on ``base_url``; closed on exit."""
    from playwright.sync_api import sync_playwright

    missing = chromium_missing_message()
    if missing:
        raise RuntimeError(missing)
    args = list(CHROMIUM_ARGS)
    if fake_mic is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_mic}")
    profile = Path(tempfile.mkdtemp(prefix="voxserve-chromium-"))
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(profile),
                executable_path=str(CHROMIUM),
                headless=True,
                args=args,
                timeout=scaled_ms(60),
            )
            try:
                context.set_default_timeout(scaled_ms(30))
                context.add_init_script(_INIT_SCRIPT)
                page = context.pages[0] if context.pages else context.new_page()
                b = Browser(context, page, base_url)

                def on_request(request: Any) -> None:
                    url: str = request.url
                    if not url.startswith((base_url + "/", "data:", "blob:")):
                        b.outside_requests.append(url)

                context.on("request", on_request)
                yield b
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
