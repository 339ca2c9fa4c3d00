"""One Wyoming connection: ``describe``, speech-to-text and text-to-speech, with the WebSocket front
end's habits (:mod:`voxserve.api.ws`): admission, an idle timeout, a send timeout, a bound on every
message, and one mapping from :class:`~voxserve.errors.VoxserveError` to the protocol's ``error`` event
(``text`` and ``code``).

Speech-to-text: ``transcribe`` (optional: model and language; otherwise the defaults), ``audio-start``,
``audio-chunk``..., ``audio-stop`` → ``transcript``. The audio runs through the same streaming session
as the WebSockets (:func:`voxserve.stt.service.open_transcriber`), so the text is ready right after
``audio-stop``. Wyoming has no request flag for streaming: every transcription also gets
``transcript-start`` (at ``audio-start``), ``transcript-chunk`` (the newly settled words, while the audio
comes) and ``transcript-stop`` (after ``transcript``); clients that do not stream ignore them, as the
reference clients ignore event types they do not know. Audio sent faster than the decodes go is not
refused: at the session's ``max_buffer_s`` the handler reads no further until a decode has taken some,
so TCP holds the client back (:func:`_feed`).

``describe`` lists every served Whisper model but only the voices of the TTS engines running: it never
starts a lazy engine (:meth:`WyomingHandler._info`).

Text-to-speech: ``synthesize`` → ``audio-start``, an ``audio-chunk`` per piece as each fragment is ready,
``audio-stop``. Streaming: ``synthesize-start``, ``synthesize-chunk``..., ``synthesize-stop`` → the audio
of each sentence as soon as it is complete (one ``audio-start`` ... ``audio-stop``), then
``synthesize-stopped``; the ``synthesize`` a client sends inside the stream for older servers is ignored.

A bad event gets an ``error`` and the connection goes on; a framing error (oversized or truncated
event) gets an ``error`` and a close. Unknown event types are ignored, as the reference servers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import AsyncGenerator
from typing import Any, cast

from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Describe
from wyoming.server import AsyncEventHandler
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from voxserve.audio.pcm import STT_SAMPLE_RATE, FloatAudio
from voxserve.engines.base import VoiceInfo
from voxserve.errors import (
    InvalidRequest,
    InvalidValue,
    Unavailable,
    VoxserveError,
)
from voxserve.runtime.messages import Chunk
from voxserve.state import AppState
from voxserve.stt.hints import WHISPER_LANGUAGES
from voxserve.stt.service import open_transcriber
from voxserve.stt.session import Final, Partial, UtteranceFailed
from voxserve.stt.transcriber import Transcriber
from voxserve.tts.speak import SpeakConfig, resolve_speak_voice, start_speak_session
from voxserve.tts.speech import iterate_audio, start_speech
from voxserve.tts.stream import AudioData, Failed, Finished, SpeakSession
from voxserve.wyoming.audio import WyomingPcm
from voxserve.wyoming.framing import FramingError, read_event
from voxserve.wyoming.info import build_info, wyoming_language

__all__ = ["AUDIO_CHUNK_BYTES", "SEND_BUFFER_BYTES", "WyomingHandler", "error_event"]

_log = logging.getLogger("voxserve.wyoming")

AUDIO_CHUNK_BYTES = 8192
"""Largest ``audio-chunk`` payload sent (2048 samples of 16-bit mono)."""

SEND_BUFFER_BYTES = 262_144
"""The kernel send buffer of a connection (about 5 s of 24 kHz audio)."""

_DECODE_DRAIN_S = 10.0
"""How long a finished transcription waits for a partial decode still in flight before cancelling it."""

_FINISH_S = 120.0
"""How long ``audio-stop`` waits for the finals still to decode (a client that sent minutes of audio
faster than real time leaves up to the session's ``max_buffer_s`` of audio, 60 s, to decode then)."""

_BACKLOG_WAIT_S = 60.0
"""How long a chunk waits for a decode to end when the session is behind before ``transcription_backlog``."""

_BACKLOG_TRIES = 10_000
"""A bound on the waits for one chunk (each follows a decode that ended; a few are ever needed)."""


def error_event(exc: VoxserveError) -> Event:
    """The protocol's ``error`` for ``exc``: its message and its stable voxserve code."""
    return Error(text=exc.message, code=exc.code).event()


class _Stalled(Exception):
    """The client left our events unread for the send timeout, or went away."""


class WyomingHandler(AsyncEventHandler):
    """One client connection (the wyoming package's handler, with a bounded reader and sends)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: AppState) -> None:
        super().__init__(reader, writer)
        self.state = state
        self.settings = state.settings
        self.session_id = secrets.token_hex(4)
        # A fixed kernel send buffer (loopback autotuning grows it to megabytes, minutes of audio): a
        # client that stops reading fills it within seconds of audio, and the send timeout then applies.
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self._send_lock = asyncio.Lock()
        self._gone = False
        # speech-to-text
        self._model: str | None = None
        self._language: str | None = None
        self._transcriber: Transcriber | None = None
        self._pcm: WyomingPcm | None = None
        self._admitted = False
        self._finals: list[str] = []
        self._sent_chunk_text = ""
        self._failed_utterances = 0
        self._held_back = False
        # streaming text-to-speech
        self._speak: SpeakSession | None = None
        self._speak_admitted = False
        self._speak_done: asyncio.Future[VoxserveError | None] | None = None
        self._speak_audio_started = False

    # --- the loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read events until the client leaves, the idle timeout passes or a framing error."""
        try:
            while not self._gone:
                try:
                    async with asyncio.timeout(self.settings.session_idle_timeout_s):
                        event = await read_event(self.reader, self.settings.wyoming_max_event_bytes)
                except TimeoutError:
                    _log.info("Wyoming session %s: idle timeout", self.session_id)
                    break
                except FramingError as exc:
                    await self._send_error(exc)
                    break
                except InvalidRequest as exc:
                    await self._send_error(exc)
                    continue
                except (ConnectionError, OSError):
                    break
                if event is None:
                    break
                if not await self.handle_event(event):
                    break
        except _Stalled:
            pass
        finally:
            await self.disconnect()
            self.writer.close()

    async def handle_event(self, event: Event) -> bool:
        try:
            return await self._dispatch(event)
        except _Stalled:
            return False
        except VoxserveError as exc:
            await self._fail(exc)
            return not self._gone
        except Exception:
            _log.exception("Wyoming session %s: %s failed", self.session_id, event.type)
            await self._fail(VoxserveError("internal error", code="internal_error"))
            return False

    async def _fail(self, exc: VoxserveError) -> None:
        """An error ends the request in progress (its audio, its transcription), not the connection."""
        await self._end_transcription()
        await self._end_speak()
        await self._send_error(exc)

    async def disconnect(self) -> None:
        await self._end_transcription()
        await self._end_speak()

    # --- sending ------------------------------------------------------------------------------------

    async def write_event(self, event: Event) -> None:
        """Send one event; a client that leaves it unread for the send timeout (or is gone) ends the
        connection (corpus P1: a write error ends the request cleanly, it is never raised further)."""
        if self._gone:
            raise _Stalled
        async with self._send_lock:
            try:
                async with asyncio.timeout(self.settings.ws_send_timeout_s):
                    await async_write_event(event, self.writer)
            except TimeoutError:
                _log.warning(
                    "Wyoming session %s: client_not_reading: events unread for %g s",
                    self.session_id,
                    self.settings.ws_send_timeout_s,
                )
                self._drop()
                raise _Stalled from None
            except (ConnectionError, OSError, RuntimeError):
                self._drop()
                raise _Stalled from None

    def _drop(self) -> None:
        self._gone = True
        with contextlib.suppress(Exception):
            self.writer.transport.abort()

    async def _send_error(self, exc: VoxserveError) -> None:
        level = logging.WARNING if exc.status >= 500 else logging.INFO
        _log.log(level, "Wyoming session %s: error %s: %s", self.session_id, exc.code, exc.message)
        with contextlib.suppress(_Stalled):
            await self.write_event(error_event(exc))

    # --- events -------------------------------------------------------------------------------------

    async def _dispatch(self, event: Event) -> bool:
        kind = event.type
        if Describe.is_type(kind):
            await self.write_event(self._info())
        elif Transcribe.is_type(kind):
            await self._on_transcribe(Transcribe.from_event(event))
        elif AudioStart.is_type(kind):
            await self._on_audio_start(event)
        elif AudioChunk.is_type(kind):
            await self._on_audio_chunk(event)
        elif AudioStop.is_type(kind):
            await self._on_audio_stop()
        elif SynthesizeStart.is_type(kind):
            await self._on_synthesize_start(event)
        elif SynthesizeChunk.is_type(kind):
            self._on_synthesize_chunk(event)
        elif SynthesizeStop.is_type(kind):
            await self._on_synthesize_stop()
        elif Synthesize.is_type(kind):
            if self._speak is None:  # inside a stream it is only the copy for older servers
                await self._on_synthesize(event)
        else:
            _log.debug("Wyoming session %s: ignored event %r", self.session_id, kind[:64])
        return True

    def _info(self) -> Event:
        """The served Whisper models (from the settings: nothing starts) and the voices of the TTS
        engines that have started. ``describe`` never starts a lazy engine nor waits for one: Home Assistant
        sends it on every setup and reload, with a timeout of its own (a second), and starting every
        engine for it would make ``engine_start=lazy`` moot for its users. A lazy engine's voices are
        listed once it has started (a request for one of its voices, ``GET /v1/audio/voices``, or
        ``preload_engines`` / ``engine_start=background``)."""
        return build_info(list(self.state.registry.stt_pools), self._started_voices()).event()

    def _started_voices(self) -> list[VoiceInfo]:
        """The voices of every TTS engine that has started (through a worker's restart too: a pool
        replacing its only worker is not ``ready`` but keeps them); one never started has none."""
        return [v for pool in self.state.registry.pools.values() for v in pool.voices]

    # --- speech-to-text -----------------------------------------------------------------------------

    async def _on_transcribe(self, request: Transcribe) -> None:
        model = request.name or None
        if model is not None:
            self.state.registry.stt_model_id(model)  # model_not_found now, not at audio-start
        self._model = model
        self._language = _whisper_language(request.language)

    async def _on_audio_start(self, event: Event) -> None:
        start = _parse(AudioStart, event)
        await self._end_transcription()
        pcm = WyomingPcm(start.rate, start.width, start.channels)
        if not self.state.stt_admission.try_enter():
            raise Unavailable("the server is at its limit of streaming transcriptions", code="at_capacity")
        self._admitted = True
        self._finals, self._sent_chunk_text, self._failed_utterances = [], "", 0
        self._held_back = False
        self._pcm = pcm
        model = self.state.registry.stt_model_id(self._model or self.settings.stt_default_model)
        self._transcriber = await open_transcriber(
            self.state, model, self._on_stt_event, language=self._language, interim=True
        )
        await self.write_event(TranscriptStart(language=self._language).event())

    async def _on_audio_chunk(self, event: Event) -> None:
        transcriber, pcm = self._transcriber, self._pcm
        if transcriber is None or pcm is None:
            raise InvalidRequest("audio-chunk before audio-start", code="audio_before_start")
        chunk = _parse(AudioChunk, event)
        if not pcm.same_format(chunk.rate, chunk.width, chunk.channels):
            await _feed(transcriber, await asyncio.to_thread(pcm.flush))
            pcm = self._pcm = WyomingPcm(chunk.rate, chunk.width, chunk.channels)
        if chunk.audio:
            kept = _Kept(pcm)
            try:
                await transcriber.feed_encoded(chunk.audio, kept)
            except Unavailable as exc:
                if exc.code != "transcription_backlog" or kept.last is None:
                    raise
                if not self._held_back:
                    self._held_back = True
                    _log.info(
                        "Wyoming session %s: audio comes faster than it is transcribed: holding the "
                        "client back (%.0f s of audio in)",
                        self.session_id,
                        transcriber.samples_in / STT_SAMPLE_RATE,
                    )
                await _feed(transcriber, kept.last, behind=exc)

    async def _on_audio_stop(self) -> None:
        transcriber = self._transcriber
        if transcriber is None:
            raise InvalidRequest("audio-stop before audio-start", code="audio_before_start")
        if self._pcm is not None:
            await _feed(transcriber, await asyncio.to_thread(self._pcm.flush))
        await transcriber.finish(timeout_s=_FINISH_S)
        failed = self._failed_utterances
        text = " ".join(t for t in self._finals if t)
        language = self._language
        if failed and not text:
            await self._end_transcription()
            raise VoxserveError("the transcription failed; try again", code="transcription_failed")
        self._transcriber = None  # no more chunks: the transcript is final
        try:
            await self.write_event(Transcript(text=text, language=language).event())
            await self.write_event(TranscriptStop().event())
        finally:
            # A partial decode may still be running after the final: let it end (a cancelled decode
            # that does not stop within a second costs the pool its worker), then release.
            await transcriber.wait_decodes(_DECODE_DRAIN_S)
            self._transcriber = transcriber
            await self._end_transcription()

    async def _on_stt_event(self, event: Any) -> None:
        if isinstance(event, Final):
            self._finals.append(event.text.strip())
            await self._send_chunk(" ".join(t for t in self._finals if t))
        elif isinstance(event, Partial):
            settled = " ".join(t for t in [*self._finals, event.committed_text.strip()] if t)
            await self._send_chunk(settled)
        elif isinstance(event, UtteranceFailed) and event.reason == "decode_failed":
            self._failed_utterances += 1

    async def _send_chunk(self, settled: str) -> None:
        """``transcript-chunk`` carries only new text: the settled words past what was sent."""
        sent = self._sent_chunk_text
        if len(settled) <= len(sent) or not settled.startswith(sent):
            return
        delta = settled[len(sent) :]
        self._sent_chunk_text = settled
        with contextlib.suppress(_Stalled):
            await self.write_event(TranscriptChunk(text=delta).event())

    async def _end_transcription(self) -> None:
        transcriber, self._transcriber, self._pcm = self._transcriber, None, None
        if transcriber is not None:
            await transcriber.close()
        if self._admitted:
            self._admitted = False
            self.state.stt_admission.leave()

    # --- text-to-speech -----------------------------------------------------------------------------

    async def _on_synthesize(self, event: Event) -> None:
        request = _parse(Synthesize, event)
        voice = await self._voice(request.voice)
        started = await start_speech(
            self.state, model="voxserve", voice=voice, text=request.text, fmt="pcm", speed=1.0
        )
        rate = self.settings.output_sample_rate
        audio = cast(AsyncGenerator[Chunk, None], iterate_audio(self.state, started))
        try:
            await self.write_event(AudioStart(rate=rate, width=2, channels=1).event())
            async for chunk in audio:
                await self._send_audio(chunk.data)
        finally:
            await audio.aclose()
            started.stream.abort()  # aclose() runs nothing if the first write failed before iterating
        await self.write_event(AudioStop().event())

    async def _send_audio(self, data: bytes) -> None:
        rate = self.settings.output_sample_rate
        for offset in range(0, len(data), AUDIO_CHUNK_BYTES):
            piece = data[offset : offset + AUDIO_CHUNK_BYTES]
            await self.write_event(AudioChunk(rate=rate, width=2, channels=1, audio=piece).event())

    async def _on_synthesize_start(self, event: Event) -> None:
        request = _parse(SynthesizeStart, event)
        await self._end_speak()
        resolved = await resolve_speak_voice(self.state.registry, await self._voice(request.voice))
        if not self.state.speak_admission.try_enter():
            raise Unavailable("the server is at its limit of speech streams", code="at_capacity")
        self._speak_admitted = True
        self._speak_done = asyncio.get_running_loop().create_future()
        self._speak_audio_started = False
        self._speak = start_speak_session(self.state, SpeakConfig(resolved, "pcm", 1.0), self._on_speak_event)

    def _on_synthesize_chunk(self, event: Event) -> None:
        if self._speak is None:
            raise InvalidRequest("synthesize-chunk before synthesize-start", code="text_before_start")
        self._speak.push(_parse(SynthesizeChunk, event).text)

    async def _on_synthesize_stop(self) -> None:
        session, done = self._speak, self._speak_done
        if session is None or done is None:
            raise InvalidRequest("synthesize-stop before synthesize-start", code="text_before_start")
        session.end()
        error = await done
        audio_started = self._speak_audio_started
        await self._end_speak()
        if error is not None:
            raise error
        if audio_started:
            await self.write_event(AudioStop().event())
        await self.write_event(SynthesizeStopped().event())

    async def _on_speak_event(self, event: Any) -> None:
        done = self._speak_done
        if isinstance(event, AudioData):
            if not self._speak_audio_started:
                self._speak_audio_started = True
                rate = self.settings.output_sample_rate
                await self.write_event(AudioStart(rate=rate, width=2, channels=1).event())
            await self._send_audio(event.data)
        elif isinstance(event, Failed):
            if done is not None and not done.done():
                done.set_result(event.error)
        elif isinstance(event, Finished) and done is not None and not done.done():
            done.set_result(None)

    async def _end_speak(self) -> None:
        session, self._speak = self._speak, None
        if session is not None:
            await session.close()
        done, self._speak_done = self._speak_done, None
        if done is not None and not done.done():
            done.cancel()
        if self._speak_admitted:
            self._speak_admitted = False
            self.state.speak_admission.leave()

    async def _voice(self, voice: Any) -> str:
        """The voice a request names: by name (a voice id, a bare name or an alias), else the first
        installed voice of its language, else the server's default."""
        if voice is None:
            return self.settings.default_voice
        if voice.name:
            await self.state.registry.resolve(voice.name)  # unknown_voice (corpus P5), never a fallback
            return str(voice.name)
        if voice.language:
            # The engines running now first; a lazy engine starts only if none of them has the language
            # (as a bare voice name does on HTTP).
            found = _voice_of_language(self._started_voices(), str(voice.language))
            if found is None:
                found = _voice_of_language(await self.state.registry.voices(), str(voice.language))
            if found is not None:
                return found
        return self.settings.default_voice


class _Kept:
    """A Wyoming audio converter that keeps the last audio it converted: the chunk is not converted
    twice (its resampler has state) when the session refuses it for a backlog."""

    def __init__(self, pcm: WyomingPcm) -> None:
        self.pcm = pcm
        self.last: FloatAudio | None = None

    def __call__(self, data: bytes) -> FloatAudio:
        self.last = self.pcm(data)
        return self.last


async def _feed(transcriber: Transcriber, audio: FloatAudio, *, behind: Unavailable | None = None) -> None:
    """Feed ``audio``; a session that is behind (a client sending faster than the decodes go) waits for
    a decode to take its audio, then takes it: nothing is lost, and this connection reads no further
    meanwhile, so TCP holds the client back and memory stays bounded (the session's ``max_buffer_s``
    plus the socket buffers). ``transcription_backlog`` only if no decode ends within
    ``_BACKLOG_WAIT_S``. ``behind``: the backlog error the first try of this audio already got."""
    for _ in range(_BACKLOG_TRIES):
        if behind is None:
            try:
                await transcriber.feed(audio)
                return
            except Unavailable as exc:
                if exc.code != "transcription_backlog":
                    raise
                behind = exc
        if not transcriber.decoding or not await transcriber.wait_decodes(_BACKLOG_WAIT_S, one=True):
            raise behind
        behind = None
    raise Unavailable("transcription is falling behind", code="transcription_backlog")


def _voice_of_language(voices: list[VoiceInfo], language: str) -> str | None:
    """The first voice of exactly ``language`` (``en_US``), else the first of its base language."""
    wanted = wyoming_language(language).lower()
    for exact in (True, False):
        for v in voices:
            tag = wyoming_language(v.language).lower()
            if tag == wanted if exact else tag.split("_")[0] == wanted.split("_")[0]:
                return v.id
    return None


def _whisper_language(language: str | None) -> str | None:
    """``en``, ``en-US`` or ``en_US`` → ``en``; ``unsupported_language`` for a language Whisper lacks."""
    if not language:
        return None
    code = language.replace("_", "-").split("-")[0].lower()
    if code not in WHISPER_LANGUAGES:
        raise InvalidValue(
            f"Whisper cannot transcribe language {language[:32]!r}", code="unsupported_language"
        )
    return code


def _parse(cls: Any, event: Event) -> Any:
    """The typed event, or ``invalid_event`` for missing or wrongly typed fields."""
    try:
        parsed = cls.from_event(event)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidRequest(f"invalid {event.type} event: {exc!s:.200}", code="invalid_event") from None
    for name in ("text",):
        if hasattr(parsed, name) and not isinstance(getattr(parsed, name), str):
            raise InvalidRequest(f"invalid {event.type} event: {name} must be a string", code="invalid_event")
    if isinstance(parsed, AudioChunk) and not isinstance(parsed.audio, bytes | bytearray):
        raise InvalidRequest("audio-chunk without audio", code="invalid_event")
    return parsed
