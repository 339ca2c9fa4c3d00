"""The Transcribe tab: live microphone transcription, and file uploads.

The microphone streams short WAV chunks; each browser session gets its own
:class:`~voxserve.stt.transcriber.Transcriber` (the driver behind ``WS /v1/stream/transcribe``),
with a per-stream Silero VAD and resampler, admitted against ``max_stt_sessions``. Partials show as
they come (confirmed words, then tentative ones); finals are never revised. An uploaded file is
decoded and transcribed by a Whisper worker in one call (never in the server process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np
import numpy.typing as npt

from voxserve.audio.decode import PcmConverter
from voxserve.engines.base import TranscribeOptions
from voxserve.errors import Unavailable, UnsupportedMediaType, VoxserveError
from voxserve.stt.service import open_transcriber
from voxserve.stt.session import Final, Partial, UtteranceFailed
from voxserve.stt.transcriber import Transcriber
from voxserve.ui.errors import ui_handler
from voxserve.ui.media import read_wav

if TYPE_CHECKING:
    from voxserve.ui.app import UiContext

__all__ = ["MicSession", "MicSessions", "build_transcribe_tab"]

_log = logging.getLogger("voxserve.ui")

_STREAM_EVERY_S = 0.25
_FINISH_TIMEOUT_S = 15.0


MAX_QUEUED_CHUNKS = 120
"""Microphone chunks waiting to be transcribed, per session: 30 s of audio at one chunk per 0.25 s.
A session further behind than that is failing its user anyway; it ends with ``backlog_full`` rather
than queueing without bound or dropping audio unnoticed."""


class MicSession:
    """One browser session's live transcription: its Transcriber and the text shown so far."""

    def __init__(self, transcriber: Transcriber, release: Callable[[], None]) -> None:
        self.transcriber = transcriber
        self._release = release
        self.finals: list[str] = []
        self.committed = ""
        self.tentative = ""
        self._convert: Callable[[bytes], npt.NDArray[np.float32]] | None = None
        self._rate = 0
        self._channels = 1
        self.closed = False
        # Gradio keeps only the latest chunk for a stream handler that is still busy, so the handler
        # just queues the chunk; this session's feeder task feeds them in order. Bounded (one more
        # place for the end marker): a session that falls that far behind ends with an error.
        self._chunks: asyncio.Queue[str | None] = asyncio.Queue(MAX_QUEUED_CHUNKS + 1)
        self._feeder = asyncio.create_task(self._feed_loop(), name="ui-mic-feeder")
        self.error: VoxserveError | None = None
        self.shown: tuple[str, str] = ("", "…")

    async def on_event(self, event: Any) -> None:
        if isinstance(event, Final):
            if event.text.strip():
                self.finals.append(event.text.strip())
            self.committed = self.tentative = ""
        elif isinstance(event, Partial):
            self.committed, self.tentative = event.committed_text.strip(), event.tentative_text.strip()
        elif isinstance(event, UtteranceFailed):
            _log.warning("an utterance could not be transcribed")
            self.committed = self.tentative = ""

    def transcript(self) -> str:
        """Finals, then the live partial (confirmed and tentative words)."""
        return " ".join(t for t in (*self.finals, self.committed, self.tentative) if t)

    def live(self) -> str:
        """The live partial as Markdown: confirmed words in bold, tentative ones in italics."""
        parts = []
        if self.committed:
            parts.append(f"**{_md_escape(self.committed)}**")
        if self.tentative:
            parts.append(f"*{_md_escape(self.tentative)}*")
        return " ".join(parts) or "…"

    def to_pcm16k(self, data: bytes) -> npt.NDArray[np.float32]:
        """A chunk from the browser (a 16-bit WAV) → 16 kHz float32 mono; anything else is 415
        ``unsupported_media_type``. Blocking: call it in a thread."""
        wav = read_wav(data)
        if wav is None:
            # Gradio's recorder sends 16-bit WAV chunks. Anything else would need FFmpeg, and
            # uploads are never decoded in the server process (a crafted file costs the decoder far
            # more than its size): refused, as the REST route refuses what it cannot take.
            raise UnsupportedMediaType(
                "a microphone chunk must be a 16-bit PCM WAV (as the browser's recorder sends)",
                param="file",
            )
        rate, channels, frames = wav
        if self._convert is None or rate != self._rate or channels != self._channels:
            self._convert = PcmConverter("linear16", rate)
            self._rate, self._channels = rate, channels
        if channels > 1:
            samples = np.frombuffer(frames[: len(frames) - len(frames) % (2 * channels)], dtype="<i2")
            frames = samples.reshape(-1, channels).mean(axis=1).astype("<i2").tobytes()
        return self._convert(frames[: len(frames) - len(frames) % 2])

    def feed_file(self, path: str) -> None:
        """Queue one chunk file from the browser; raises the feeder's error, if it failed, and
        ``backlog_full`` when :data:`MAX_QUEUED_CHUNKS` chunks already wait (never drops audio)."""
        if self.error is not None:
            raise self.error
        if self._chunks.qsize() >= MAX_QUEUED_CHUNKS:
            self.error = Unavailable(
                "transcription fell too far behind the microphone; stop and start again",
                code="backlog_full",
            )
            raise self.error
        self._chunks.put_nowait(path)

    async def drain(self, timeout_s: float) -> None:
        """Wait until every queued chunk has been fed (or ``timeout_s``)."""
        self._chunks.put_nowait(None)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._feeder), timeout_s)

    async def _feed_loop(self) -> None:
        while True:
            path = await self._chunks.get()
            if path is None:
                return
            try:
                data = await asyncio.to_thread(Path(path).read_bytes)
                pcm = await asyncio.to_thread(self.to_pcm16k, data)
                await self.transcriber.feed(pcm)
            except VoxserveError as exc:
                self.error = exc
                return
            except OSError as exc:
                _log.warning("a microphone chunk could not be read: %s", exc)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._feeder
        try:
            await self.transcriber.close()
        finally:
            self._release()


class MicSessions:
    """The live microphone sessions, by Gradio session hash."""

    def __init__(self, ctx: UiContext) -> None:
        self.ctx = ctx
        self.by_session: dict[str, MicSession] = {}
        self._lock = asyncio.Lock()

    async def open(self, key: str, model: str, language: str) -> MicSession:
        """The session's live transcription, started on first use."""
        async with self._lock:
            current = self.by_session.get(key)
            if current is not None and not current.closed:
                return current
            state = self.ctx.state
            admission = state.stt_admission
            if not admission.try_enter():
                raise Unavailable(
                    "The server is transcribing as many streams as it can; try again later.",
                    code="at_capacity",
                )
            try:
                holder: list[MicSession] = []

                async def emit(event: Any) -> None:
                    await holder[0].on_event(event)

                transcriber = await open_transcriber(state, model, emit, language=language)
            except BaseException:
                admission.leave()
                raise
            session = MicSession(transcriber, admission.leave)
            holder.append(session)
            self.by_session[key] = session
            return session

    async def finish(self, key: str) -> MicSession | None:
        """Flush the last final, then stop the session."""
        async with self._lock:
            session = self.by_session.pop(key, None)
        if session is None:
            return None
        try:
            await session.drain(_FINISH_TIMEOUT_S)
            await session.transcriber.finish(timeout_s=_FINISH_TIMEOUT_S)
        finally:
            await session.close()
        return session

    async def drop(self, key: str) -> None:
        async with self._lock:
            session = self.by_session.pop(key, None)
        if session is not None:
            await session.close()


def _md_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\`*_{}[]<>()#+-.!|" else c for c in text)


def _language(value: str | None) -> str | None:
    code = (value or "").strip().split("-")[0].lower()
    return code or None


def build_transcribe_tab(ctx: UiContext) -> None:
    settings = ctx.state.settings
    sessions = MicSessions(ctx)
    ctx.extras["transcribe"] = sessions
    models = list(ctx.state.registry.stt_pools)
    with gr.Tab("Transcribe", id="transcribe"):
        with gr.Row():
            model = gr.Dropdown(
                label="Model", choices=models, value=settings.stt_default_model, elem_id="stt-model"
            )
            language = gr.Textbox(label="Language", value="en", max_length=16, elem_id="stt-language")
        with gr.Row():
            with gr.Column():
                mic = gr.Audio(
                    label="Microphone",
                    sources=["microphone"],
                    streaming=True,
                    type="filepath",
                    format=None,
                    # The live waveform costs the browser CPU; the transcript is the feedback here.
                    waveform_options=gr.WaveformOptions(show_recording_waveform=False),
                    elem_id="stt-mic",
                )
                live = gr.Markdown("…", label="Live", elem_id="stt-live")
                transcript = gr.Textbox(
                    label="Transcript", lines=6, interactive=False, elem_id="stt-transcript"
                )
            with gr.Column():
                upload = gr.Audio(
                    label="Audio file",
                    sources=["upload"],
                    type="filepath",
                    format=None,
                    elem_id="stt-file",
                )
                file_button = gr.Button("Transcribe file", variant="primary", elem_id="stt-file-button")
                file_text = gr.Textbox(
                    label="File transcript", lines=6, interactive=False, elem_id="stt-file-transcript"
                )

        @ui_handler
        async def on_start(model_value: str, language_value: str, request: gr.Request) -> tuple[str, str]:
            key = request.session_hash or ""
            await sessions.drop(key)
            await sessions.open(key, model_value, _language(language_value) or "en")
            return "", "…"

        @ui_handler
        async def on_chunk(
            chunk: str | None, model_value: str, language_value: str, request: gr.Request
        ) -> tuple[Any, Any]:
            key = request.session_hash or ""
            try:
                session = await sessions.open(key, model_value, _language(language_value) or "en")
                if chunk:
                    session.feed_file(chunk)
            except Exception:
                await sessions.drop(key)  # a failed stream is not resumed: the next chunk starts anew
                raise
            # Ten chunks a second: send only what changed, so Gradio's per-chunk work stays small (a
            # chunk that arrives while the handler is busy replaces the one before it).
            shown = (session.transcript(), session.live())
            previous, session.shown = session.shown, shown
            text = shown[0] if shown[0] != previous[0] else gr.skip()
            live_md = shown[1] if shown[1] != previous[1] else gr.skip()
            return text, live_md

        @ui_handler
        async def on_stop(request: gr.Request) -> tuple[str, str]:
            session = await sessions.finish(request.session_hash or "")
            if session is None:
                return gr.skip(), gr.skip()
            return session.transcript(), "…"

        @ui_handler
        async def on_unload(request: gr.Request) -> None:
            await sessions.drop(request.session_hash or "")

        mic.start_recording(on_start, inputs=[model, language], outputs=[transcript, live], queue=False)
        mic.stream(
            on_chunk,
            inputs=[mic, model, language],
            outputs=[transcript, live],
            stream_every=_STREAM_EVERY_S,
            time_limit=settings.max_session_s,
            show_progress="hidden",
        )
        mic.stop_recording(on_stop, outputs=[transcript, live])
        ctx.blocks.unload(on_unload)

        @ui_handler
        async def transcribe_file(
            path: str | None, model_value: str, language_value: str
        ) -> AsyncIterator[str]:
            if not path:
                raise gr.Error("Choose an audio file first.")
            state = ctx.state
            data = await asyncio.to_thread(Path(path).read_bytes)
            pool = state.registry.stt_pool(model_value)
            options = TranscribeOptions(
                language=_language(language_value), beam_size=state.settings.stt_beam_size
            )
            # Decoded in the STT worker, as for the REST route.
            stream = await pool.stream_call(
                "transcribe_upload", data, state.settings.max_audio_seconds, options
            )
            del data
            text = ""
            try:
                first = True
                async for item in stream:
                    if first:  # the first item is the TranscriptInfo (language, duration)
                        first = False
                        continue
                    text += item.text
                    yield text.strip()
            finally:
                with contextlib.suppress(Exception):
                    stream.abort()
            yield text.strip()

        file_button.click(
            transcribe_file, inputs=[upload, model, language], outputs=file_text, api_name="transcribe_file"
        )
