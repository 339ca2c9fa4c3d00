"""``WS /v1/realtime?intent=transcription``: the OpenAI Realtime transcription subset.

Both dialects are served. A client that sends ``OpenAI-Beta: realtime=v1`` in its handshake (as the
beta SDKs do) speaks beta: ``transcription_session.created``, ``transcription_session.update`` →
``transcription_session.updated``; any other client speaks GA: ``session.created`` with
``session.type == "transcription"``, ``session.update`` → ``session.updated``. The query
(``?intent=transcription``) does not pick the dialect: GA SDKs send it too. After an update the server
answers in the dialect of the update. Audio is ``pcm16`` at 24 kHz (resampled once per stream with a
stateful resampler), or real G.711 μ-law / A-law at 8 kHz when the session asks.

Deltas (``conversation.item.input_audio_transcription.delta``) carry only confirmed words, so they are
append-only; ``.completed`` carries the final transcript. Server VAD defaults to OpenAI's: threshold 0.5,
prefix padding 300 ms, silence 500 ms; ``turn_detection: null`` means manual ``commit`` only.
A session too far behind gets error ``transcription_backlog`` and close 1013, after the transcripts
of the audio it had accepted. Wire messages: :mod:`voxserve.protocol.realtime`.

Per model, as at OpenAI: the realtime-only models (``gpt-realtime-whisper``, ``gpt-live-transcribe``)
have no server turn detection unless the client asks for it: an update that names one and leaves
``turn_detection`` out (and no update before set it) turns server VAD off, and the session object says
so. The session is configured by the first update whenever it comes: audio appended before it is
re-fed to the transcriber the update builds (up to :data:`REPLAY_S`), unless something of it was
already reported, in which case the old transcriber finishes it (one item, transcribed once). An update
rebuilds the transcriber only when the served model or the turn detection changes; language, prompt,
``keywords``, ``languages`` and ``include`` apply from the next decode, the format from the next append.

The commit race: a ``commit`` that finds nothing new because server VAD has just committed everything
said since the previous item (pipecat's own VAD commits a moment after voxserve's) is answered with
``input_audio_buffer.committed`` naming that item, and no new item: not OpenAI's
``input_audio_buffer_commit_empty`` error, which the frameworks treat as fatal. An empty buffer with no
such server commit still gets the error; a commit of 100 ms or more in which server VAD heard no speech
gives an item with an empty transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import replace
from typing import Any

import numpy as np
from fastapi import APIRouter

from voxserve.api.ws import TranscribingHandler, WsConnection, websocket_route
from voxserve.audio.decode import PcmConverter
from voxserve.audio.pcm import FloatAudio
from voxserve.engines.base import TranscribeOptions, Word
from voxserve.errors import InvalidRequest, VoxserveError
from voxserve.protocol import realtime as wire
from voxserve.state import AppState
from voxserve.stt.hints import check_keywords, check_languages, english_only, token_logprobs
from voxserve.stt.service import open_transcriber
from voxserve.stt.session import Final, Partial, SpeechStarted, SpeechStopped, UtteranceFailed
from voxserve.stt.transcriber import Transcriber, session_config

__all__ = ["REPLAY_S", "RealtimeHandler", "default_turn_detection", "realtime_error", "router"]

router = APIRouter()

_log = logging.getLogger("voxserve.realtime")

_MIN_COMMIT_MS = 100
REPLAY_S = 30.0
"""Audio appended before the first ``session.update`` that is kept to be re-fed to the transcriber
the update builds (more than this: the audio is finished by the default transcriber instead)."""
_RETIRE_TIMEOUT_S = 30.0
"""How long a replaced transcriber may take to deliver the finals of the audio it had."""


def realtime_error(exc: VoxserveError, event_id: str | None = None) -> dict[str, Any]:
    """The Realtime error event; it names the client event it answers, where that had an id."""
    return wire.RealtimeErrorEvent.from_error(exc, event_id or getattr(exc, "event_id", None)).to_json()


def default_turn_detection(state: AppState, model: str) -> wire.TurnDetection | None:
    """A session's turn detection when the client never set one: none for OpenAI's realtime-only
    models and their aliases (the client commits), server VAD with OpenAI's defaults for the others."""
    return None if state.registry.realtime_only(model) else wire.TurnDetection()


class RealtimeHandler(TranscribingHandler):
    """One Realtime connection: its dialect, session settings and items, around a :class:`Transcriber`."""

    def __init__(self, conn: WsConnection, state: AppState, dialect: wire.Dialect) -> None:
        self.conn = conn
        self.state = state
        self.dialect: wire.Dialect = dialect
        self.session = wire.TranscriptionSession(max_message_bytes=state.settings.ws_max_message_bytes)
        self.transcriber: Transcriber | None = None
        self.convert = PcmConverter("linear16", 24000)
        self.generation = 0
        """Which transcriber an event comes from (utterance ids restart with each one)."""
        self.server_vad: dict[int, bool] = {}
        self.items: dict[tuple[int, int], str] = {}
        self.sent: dict[tuple[int, int], str] = {}
        self.previous_item: str | None = None
        self.buffered_ms = 0.0
        """Audio appended since the last commit (server VAD's or the client's)."""
        self.vad_item: tuple[str, str | None] | None = None
        """The item server VAD committed last, with its previous item, while no speech began since."""
        self.td_explicit = False
        """Whether the client has set ``turn_detection`` (else it follows the model)."""
        self.configured = False
        self.reported = False
        """Whether anything about the audio (VAD events, items, transcripts) has been sent."""
        self.replay: list[FloatAudio] | None = []
        self.replay_samples = 0
        self.retired: set[asyncio.Task[None]] = set()
        self._client_commit = False

    @classmethod
    async def open(cls, conn: WsConnection, state: AppState) -> RealtimeHandler:
        """Start a transcriber with the default session and announce it (``*.created``) in the
        dialect of the handshake."""
        dialect = wire.dialect_from_headers(conn.ws.headers)
        handler = cls(conn, state, dialect)
        await handler.build()
        await conn.send_json(wire.session_created(dialect, handler.session))
        return handler

    def _options(self) -> TranscribeOptions:
        session = self.session
        return TranscribeOptions(
            language=session.language,
            prompt=session.prompt or None,
            beam_size=self.state.settings.stt_beam_size,
            keywords=session.keywords,
            languages=session.languages,
            word_timestamps=session.logprobs,
        )

    async def build(self) -> None:
        """Create the transcriber for the current session settings (it replaces the one there was,
        which is closed: callers that keep its audio retire it first)."""
        if self.transcriber is not None:
            await self.transcriber.close()
            self.transcriber = None
        td = self.session.turn_detection
        config = session_config(
            self.state.settings,
            threshold=None if td is None or td.threshold is None else float(td.threshold),
            silence_ms=None if td is None or td.silence_duration_ms is None else int(td.silence_duration_ms),
            prefix_ms=None if td is None or td.prefix_padding_ms is None else int(td.prefix_padding_ms),
        )
        if td is None:
            config = replace(config, vad_threshold=None)  # manual commits only
        self.generation += 1
        generation = self.generation
        self.server_vad[generation] = td is not None

        async def emit(event: Any) -> None:
            await self.on_event(event, generation)

        options = self._options()
        self.transcriber = await open_transcriber(
            self.state,
            self.session.model,
            emit,
            language=options.language,
            prompt=options.prompt,
            config=config,
            keywords=options.keywords,
            languages=options.languages,
            word_timestamps=options.word_timestamps,
        )
        encoding, rate = wire.AUDIO_FORMATS[self.session.input_audio_format]
        self.convert = PcmConverter(encoding, rate)
        self.buffered_ms = 0.0
        self.vad_item = None

    # --- client events ------------------------------------------------------------------------------

    async def on_message(self, data: str | bytes) -> None:
        event = wire.parse_client_message(data)
        transcriber = self.transcriber
        assert transcriber is not None
        if isinstance(event, wire.InputAudioBufferAppend):
            try:
                samples = await transcriber.feed_encoded(event.audio, self._converter())
            except InvalidRequest as exc:  # bad audio: this event is refused, the session goes on
                exc.param = exc.param or "audio"
                await self.conn.send_error(exc, event.event_id)
                return
            self.buffered_ms += 1000 * samples / 16000
        elif isinstance(event, wire.InputAudioBufferCommit):
            await self.commit(transcriber, event)
        elif isinstance(event, wire.InputAudioBufferClear):
            await transcriber.clear()
            self.buffered_ms = 0.0
            self.vad_item = None
            await self.conn.send_json(wire.Cleared())
        else:
            try:
                await self.update(event)
            except VoxserveError as exc:  # refused: the session is as it was
                if getattr(exc, "event_id", None) is None:
                    setattr(exc, "event_id", event.event_id)  # noqa: B010 - not every error has the slot
                raise

    def _converter(self) -> Any:
        """The converter of the session's format; until the first update it also keeps the audio
        (for :meth:`update` to re-feed)."""
        convert = self.convert
        if self.replay is None:
            return convert
        replay = self.replay

        def convert_and_keep(data: bytes) -> FloatAudio:
            pcm = convert(data)
            if self.replay is replay:
                if self.replay_samples + pcm.size > REPLAY_S * 16000:
                    self.replay = None  # too long to keep: the first update finishes it instead
                else:
                    replay.append(pcm)
                    self.replay_samples += pcm.size
            return pcm

        return convert_and_keep

    async def commit(self, transcriber: Transcriber, event: wire.InputAudioBufferCommit) -> None:
        """``input_audio_buffer.commit``: end the current utterance, or acknowledge a commit that
        server VAD has just done (the commit race), or refuse an empty buffer as OpenAI does."""
        if self.vad_item is not None and not transcriber.speech_pending:
            item, previous = self.vad_item  # nothing said since server VAD committed this item
            await self.conn.send_json(wire.Committed(item, previous))
            return
        if self.buffered_ms < _MIN_COMMIT_MS:
            raise wire.InvalidClientEvent(
                f"buffer too small: expected at least {_MIN_COMMIT_MS} ms of audio, "
                f"got {self.buffered_ms:.0f} ms",
                code="input_audio_buffer_commit_empty",
                event_id=event.event_id,
            )
        self._client_commit = True
        try:
            committed = await transcriber.commit()
        finally:
            self._client_commit = False
        if not committed:  # server VAD heard no speech in this audio: an item with no words
            item = "item_" + secrets.token_hex(10)
            await self._committed(item, self.buffered_ms / 1000)

    async def _committed(self, item: str, seconds: float) -> None:
        send = self.conn.send_json
        await send(wire.Committed(item, self.previous_item))
        await send(wire.item_created(self.dialect, item, self.previous_item))
        self.previous_item = item
        self.buffered_ms = 0.0
        logprobs = () if self.session.logprobs else None
        await send(wire.TranscriptionCompleted(item, "", round(seconds, 3), logprobs=logprobs))
        self.reported = True

    async def update(self, event: wire.TranscriptionSessionUpdate | wire.SessionUpdate) -> None:
        """Apply a session update (checked first: a model not served here, or hints over the limits,
        change nothing)."""
        registry, settings = self.state.registry, self.state.settings
        old = self.session
        new = old.apply(event)
        model_id = registry.stt_model_id(new.model)  # raises model_not_found
        td_explicit = self.td_explicit or event.turn_detection is not wire.KEEP
        if not td_explicit:
            new = replace(new, turn_detection=default_turn_detection(self.state, new.model))
        if new.language and english_only(model_id) and new.language.strip().lower() != "en":
            raise InvalidRequest(
                f"language {new.language!r} is not supported by the English-only model {model_id!r}",
                code="unsupported_language",
                param="language",
            )
        new = replace(
            new,
            keywords=check_keywords(settings, new.keywords),
            languages=check_languages(settings, new.languages, model_id),
        )
        self.dialect = "beta" if isinstance(event, wire.TranscriptionSessionUpdate) else "ga"
        self.td_explicit = td_explicit
        self.session = new
        rebuild = (registry.stt_model_id(old.model), old.turn_detection) != (model_id, new.turn_detection)
        replay, replay_samples = self.replay, self.replay_samples
        self.replay, self.replay_samples = None, 0  # the session is configured: audio is not kept now
        first, self.configured = not self.configured, True
        if rebuild:
            previous = self.transcriber
            keep = replay if first and not self.reported else None
            if previous is not None and keep is None:
                self.transcriber = None  # it finishes its audio with the settings it was heard with
                self._retire(previous)
            buffered = self.buffered_ms
            await self.build()
            if keep:
                assert self.transcriber is not None
                await self.transcriber.feed(np.concatenate(keep))
                self.buffered_ms = buffered
                _log.debug("re-fed %.2f s of audio sent before the first update", replay_samples / 16000)
        else:
            assert self.transcriber is not None
            if new != old:
                await self.transcriber.configure(self._options(), new.prompt)
            if new.input_audio_format != old.input_audio_format:
                encoding, rate = wire.AUDIO_FORMATS[new.input_audio_format]
                self.convert = PcmConverter(encoding, rate)
        await self.conn.send_json(wire.session_updated(self.dialect, self.session))

    def _retire(self, transcriber: Transcriber) -> None:
        """Let a replaced transcriber deliver the finals of its audio in the background."""

        async def finish() -> None:
            try:
                await transcriber.finish(timeout_s=_RETIRE_TIMEOUT_S)
            except Exception as exc:  # the connection may have gone: nothing to deliver to
                _log.debug("a replaced transcriber did not finish: %s", exc)
            finally:
                await transcriber.close()

        task = asyncio.create_task(finish(), name="realtime-retire")
        self.retired.add(task)
        task.add_done_callback(self.retired.discard)

    async def drain(self, timeout_s: float) -> None:
        await super().drain(timeout_s)
        if self.retired:
            await asyncio.wait(set(self.retired), timeout=timeout_s)

    async def aclose(self) -> None:
        for task in list(self.retired):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await super().aclose()

    # --- transcriber events -------------------------------------------------------------------------

    def item_id(self, key: tuple[int, int]) -> str:
        if key not in self.items:
            self.items[key] = "item_" + secrets.token_hex(10)
        return self.items[key]

    async def on_event(self, event: Any, generation: int) -> None:
        send = self.conn.send_json
        server_vad = self.server_vad.get(generation, False)
        current = generation == self.generation
        if isinstance(event, SpeechStarted):
            if current:
                self.vad_item = None
            if server_vad:  # manual commit mode: no server VAD events, as with OpenAI
                self.reported = True
                item = self.item_id((generation, event.utterance_id))
                await send(wire.SpeechStarted(int(event.start_s * 1000), item))
        elif isinstance(event, SpeechStopped):
            self.reported = True
            item = self.item_id((generation, event.utterance_id))
            previous = self.previous_item
            if server_vad:
                await send(wire.SpeechStopped(int(event.end_s * 1000), item))
            await send(wire.Committed(item, previous))
            await send(wire.item_created(self.dialect, item, previous))
            self.previous_item = item
            if current:
                self.buffered_ms = 0.0
                self.vad_item = None if self._client_commit else (item, previous)
        elif isinstance(event, Partial):
            await self.delta((generation, event.utterance_id), event.committed_text)
        elif isinstance(event, UtteranceFailed):
            if event.reason == "decode_failed":
                self.reported = True
                await send(wire.TranscriptionFailed(self.item_id((generation, event.utterance_id))))
        elif isinstance(event, Final):
            self.reported = True
            key = (generation, event.utterance_id)
            words = event.words if self.session.logprobs else None
            await self.delta(key, event.text, words)
            usage = round(event.end_s - event.start_s, 3)
            logprobs = None if words is None else _logprobs(words)
            await send(wire.TranscriptionCompleted(self.item_id(key), event.text, usage, logprobs=logprobs))

    async def delta(self, key: tuple[int, int], text: str, words: tuple[Word, ...] | None = None) -> None:
        """Send what ``text`` adds to what this item has had (deltas only ever append); with the
        final's ``words``, the delta carries the logprobs of the words it adds."""
        sent = self.sent.get(key, "")
        if not text.startswith(sent) or len(text) <= len(sent):
            return
        self.sent[key] = text
        self.reported = True
        added = text[len(sent) :]
        logprobs = None
        n = len(added.split())
        if words is not None and n and len(words) >= n:
            tail = words[len(words) - n :]
            if "".join(w.word for w in tail).split() == added.split():
                logprobs = _logprobs(tail)
        await self.conn.send_json(wire.TranscriptionDelta(self.item_id(key), added, logprobs=logprobs))


def _logprobs(words: tuple[Word, ...]) -> tuple[wire.Logprob, ...]:
    return tuple(
        wire.Logprob(e["token"], e["logprob"], tuple(e["bytes"])) for e in token_logprobs(list(words))
    )


# Registered after the handler class it opens.
websocket_route(
    router,
    "/v1/realtime",
    admission=lambda s: s.stt_admission,
    open_session=RealtimeHandler.open,
    encode_error=realtime_error,
)
