"""The web UI in a real browser: the Speak tab plays audio, the Transcribe tab shows the spoken words."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.browser.harness import TAIL_SILENCE_S, Browser, browser, make_fake_mic, scaled_ms
from tests.e2e.conftest import Server
from tests.speech_dev import by_name
from tests.timing import until
from tests.wer import wer

pytestmark = pytest.mark.browser

MIC_FILE = "librispeech_1272-141231-0002.wav"
UPLOAD_FILE = "librispeech_1272-141231-0002.wav"
CHAT_MIC_FILE = "speech_recognition_english_123.wav"


def _assert_offline(b: Browser) -> None:
    assert b.outside_requests == [], f"the page loaded resources from elsewhere: {b.outside_requests}"


def _audio_state(b: Browser) -> dict[str, float | bool] | None:
    state: dict[str, float | bool] | None = b.page.evaluate(
        """() => {
          const a = document.querySelector('#speak-audio audio');
          if (!a || !a.currentSrc) return null;
          return {t: a.currentTime, d: a.duration, paused: a.paused, ended: a.ended};
        }"""
    )
    return state


def test_speak_tab_plays_audio_while_it_is_generated(ui_server: Server) -> None:
    text = "Hello from the voxserve web interface. This second sentence makes the audio a little longer."
    with browser(ui_server.url) as b:
        b.open_ui()
        b.page.fill("#speak-text textarea", text)
        b.page.click("#speak-button")
        until(
            lambda: (s := _audio_state(b)) is not None and float(s["t"]) > 0,
            45,
            0.1,
            message=lambda: f"the speech starts playing: {_audio_state(b)}",
        )
        until(
            lambda: (s := _audio_state(b)) is not None and bool(s["ended"]),
            60,
            0.1,
            message=lambda: f"the speech finishes playing: {_audio_state(b)}",
        )
        state = _audio_state(b)
        assert state is not None and 3.0 <= float(state["d"]) <= 15.0, state
        # The download is the whole speech in the chosen format (mp3 by default).
        link = b.page.wait_for_selector("#speak-download a[href]", timeout=scaled_ms(30))
        assert link is not None
        href = link.get_attribute("href")
        assert href
        data = httpx.get(href if href.startswith("http") else ui_server.url + href, timeout=30).content
        assert len(data) > 10_000 and (data[:3] == b"ID3" or data[0] == 0xFF), data[:16]
        _assert_offline(b)


def test_speak_tab_shows_voxserve_errors_as_plain_text(ui_server: Server) -> None:
    """An unknown voice: the page shows voxserve's message and code, as text (never as HTML, though it
    quotes what the user typed). Unexpected exceptions: tests/unit/ui/test_ui_errors.py."""
    with browser(ui_server.url) as b:
        b.open_ui()
        b.page.fill("#speak-text textarea", "Hello.")
        voice = b.page.locator("#speak-voice input")
        voice.fill("<b>nobody</b>")
        voice.press("Enter")
        b.page.click("#speak-button")
        toast = b.page.wait_for_selector("[data-testid='toast-body']", timeout=scaled_ms(30))
        assert toast is not None
        text = " ".join(toast.inner_text().split())
        assert "unknown voice '<b>nobody</b>'" in text and "(unknown_voice)" in text, text
        assert b.page.query_selector("[data-testid='toast-body'] b") is None
        _assert_offline(b)


def test_transcribe_tab_shows_the_spoken_words_from_the_microphone(ui_server: Server, tmp_path: Path) -> None:
    utterance = by_name(MIC_FILE)
    mic = make_fake_mic(utterance, tmp_path / "mic.wav")
    with browser(ui_server.url, fake_mic=mic.path) as b:
        b.open_ui()
        b.page.get_by_role("tab", name="Transcribe").click()
        b.page.click("#stt-mic .record-button")

        def transcript() -> str:
            value: str = b.page.input_value("#stt-transcript textarea")
            return value

        # Every word of the recording, through live partials and finals, while the mic streams; read
        # before the fake device starts the file over.
        def heard_it_all() -> bool:
            elapsed = b.mic_elapsed_s()
            return elapsed is not None and (
                wer(utterance.text, transcript()) <= 0.35 or elapsed >= mic.duration_s - 0.5
            )

        until(heard_it_all, mic.duration_s + 60, 0.1, message=lambda: f"live transcript: {transcript()!r}")
        latency = b.mic_latency_s(mic.speech_start_s)
        live_text = transcript()
        b.page.click("#stt-mic .stop-button")
        # While the mic streams, the last words are a tentative partial (measured 0.2-0.42 WER across
        # runs, by where the VAD cuts); the finals, flushed when recording stops, are held to 0.35.
        assert wer(utterance.text, live_text) <= 0.5, (
            f"WER {wer(utterance.text, live_text):.2f}: {live_text!r}"
        )
        # Text showed while the microphone streamed. How soon after the start of speech is the
        # benchmark's number (benchmarks/ui_bench.py, against the 1.5 s target), not this test's.
        assert latency is not None
        print(f"first partial {latency:.2f} s after speech starts; WER {wer(utterance.text, live_text):.3f}")
        # Stopping flushes the last final; the transcript stays and holds every word. tiny.en decodes
        # each VAD-cut piece on its own: at most 0.35 WER in earlier clean-clone CI runs, 0.39 once on a
        # loaded machine (every word there, some misheard: "the acavus over-trained eyes").
        b.page.wait_for_selector("#stt-mic .record-button", timeout=scaled_ms(30))
        assert transcript().startswith(live_text[: len(live_text) // 2])
        until(
            lambda: wer(utterance.text, transcript()) <= 0.45,
            30,
            0.25,
            message=lambda: f"final WER {wer(utterance.text, transcript()):.2f}: {transcript()!r}",
        )
        _assert_offline(b)


def test_transcribe_tab_transcribes_an_uploaded_file(ui_server: Server) -> None:
    utterance = by_name(UPLOAD_FILE)
    with browser(ui_server.url) as b:
        b.open_ui()
        b.page.get_by_role("tab", name="Transcribe").click()
        b.page.set_input_files("#stt-file input[type=file]", str(utterance.path))
        # The upload finishes when the player shows the file.
        b.page.wait_for_selector("#stt-file audio", state="attached", timeout=scaled_ms(30))
        b.page.click("#stt-file-button")

        def text() -> str:
            value: str = b.page.input_value("#stt-file-transcript textarea")
            return value

        until(
            lambda: wer(utterance.text, text()) <= 0.25,
            60,
            0.25,
            message=lambda: f"WER {wer(utterance.text, text()):.2f}: {text()!r}",
        )
        _assert_offline(b)


def _chat_audio(b: Browser) -> dict[str, float | bool] | None:
    state: dict[str, float | bool] | None = b.page.evaluate(
        """() => {
          const a = document.querySelector('#chat-audio audio');
          if (!a || !a.currentSrc) return null;
          return {t: a.currentTime, d: a.duration, paused: a.paused, ended: a.ended};
        }"""
    )
    return state


def _chat_reply(b: Browser) -> str:
    messages = b.page.locator("#chat-history .message").all_inner_texts()
    return " ".join(messages[-1].split()) if len(messages) >= 2 else ""


def _reply_is_heard(b: Browser) -> None:
    until(
        lambda: (s := _chat_audio(b)) is not None and float(s["t"]) > 0,
        60,
        0.1,
        message=lambda: f"the spoken reply plays: {_chat_audio(b)}",
    )


def test_chat_tab_answers_in_text_and_speech(ui_server: Server) -> None:
    # The server has no LLM settings: the embedded model answers (its words vary: it samples).
    with browser(ui_server.url) as b:
        b.open_ui()
        b.page.get_by_role("tab", name="Chat").click()
        assert b.page.locator("#chat-no-llm").count() == 0, "the Chat tab says no LLM is configured"
        b.page.fill("#chat-message textarea", "What is the capital of France?")
        b.page.press("#chat-message textarea", "Enter")
        words = lambda: len(_chat_reply(b).split())  # noqa: E731
        until(lambda: words() >= 1, 60, 0.1, message=lambda: f"the answer: {_chat_reply(b)!r}")
        assert "no LLM is configured" not in _chat_reply(b)
        _reply_is_heard(b)
        _assert_offline(b)


def test_chat_tab_answers_a_spoken_message(ui_server: Server, tmp_path: Path) -> None:
    utterance = by_name(CHAT_MIC_FILE)
    mic = make_fake_mic(utterance, tmp_path / "chat-mic.wav")
    with browser(ui_server.url, mic.path) as b:
        b.open_ui()
        b.page.get_by_role("tab", name="Chat").click()
        b.page.click("#chat-message button[aria-label='Record audio']")
        b.page.click("#chat-message button[aria-label='Start recording']")
        # Record the lead silence and the whole utterance, then stop (bounded by the file's length).
        until(
            lambda: (b.mic_elapsed_s() or 0.0) > mic.duration_s - TAIL_SILENCE_S + 0.7,
            30,
            0.1,
            message="the microphone opens and records the utterance",
        )
        b.page.click("#chat-message button[aria-label='Stop recording']")
        b.page.click("#chat-message button[aria-label='Attach audio']")
        b.page.click("#chat-message button[aria-label='Submit']")

        def answer() -> str:
            # The reply shows what was heard, then the embedded model's answer after it.
            reply = _chat_reply(b)
            return reply.split("”", 1)[1].strip(" )*") if "heard: “" in reply and "”" in reply else ""

        until(lambda: answer().split(), 60, 0.1, message=lambda: f"the answer: {_chat_reply(b)!r}")
        heard = _chat_reply(b).split("heard: “", 1)[-1].split("”", 1)[0]
        assert wer(utterance.text, heard) <= 0.35, heard
        _reply_is_heard(b)
        _assert_offline(b)
