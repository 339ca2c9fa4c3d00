"""The session of ``WS /v1/realtime`` (OpenAI Realtime transcription) and its updates, in both dialects.

A :class:`TranscriptionSession` is the session object the server reports (``session.created``,
``transcription_session.updated``, ...); :class:`TranscriptionSessionUpdate` (beta) and
:class:`SessionUpdate` (GA) are what a client sends to change it. An update names only what changes:
fields left at :data:`KEEP` keep their value, and :meth:`TranscriptionSession.apply` merges an update
into a session (pure: the server then rebuilds its transcriber). Whether the model is served is the
server's check, made before it applies the update.

The two dialects, for the same session::

    beta  {"input_audio_format": "pcm16", "input_audio_transcription": {"model", "language", "prompt",
           "keywords", "languages"}, "turn_detection": {...} | null, "include": [...]}
    GA    {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
           "transcription": {...}, "turn_detection": {...} | null}}, "include": [...]}

``keywords`` and ``languages`` (lists of strings, ``gpt-transcribe``'s hints) and ``include``
(:data:`INCLUDE_LOGPROBS`) are reported only when set, so a session that does not use them reads as
before.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Final, Literal, Self

from voxserve.protocol.json import (
    WireMessage,
    describe,
    get_int,
    get_object,
    get_opt_str,
    get_str,
    invalid,
)

__all__ = [
    "AUDIO_FORMATS",
    "GA_FORMATS",
    "INCLUDE_LOGPROBS",
    "KEEP",
    "Dialect",
    "Keep",
    "SessionUpdate",
    "TranscriptionSession",
    "TranscriptionSessionUpdate",
    "TurnDetection",
    "client_event_id",
    "dialect_from_headers",
]

Dialect = Literal["beta", "ga"]
"""``beta`` (``OpenAI-Beta: realtime=v1``, ``transcription_session.*``) or ``ga`` (``session.*``)."""

AUDIO_FORMATS: Final[Mapping[str, tuple[str, int]]] = {
    "pcm16": ("linear16", 24000),
    "g711_ulaw": ("mulaw", 8000),
    "g711_alaw": ("alaw", 8000),
}
"""Input audio formats (beta names) → (PCM encoding for :func:`voxserve.audio.decode.decode_pcm`, Hz)."""

GA_FORMATS: Final[Mapping[str, str]] = {
    "audio/pcm": "pcm16",
    "audio/pcmu": "g711_ulaw",
    "audio/pcma": "g711_alaw",
}
"""GA format types → the beta names used by :class:`TranscriptionSession`."""

_GA_NAMES = {beta: ga for ga, beta in GA_FORMATS.items()}

INCLUDE_LOGPROBS: Final = "item.input_audio_transcription.logprobs"
"""The ``include`` value that asks for ``logprobs`` on transcription deltas and completions (the only
one there is)."""


class Keep(enum.Enum):
    """The type of :data:`KEEP`."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP
"""An update field left as it is (absent from the update's JSON)."""


def dialect_from_headers(headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]) -> Dialect:
    """``beta`` iff an ``OpenAI-Beta`` header (any case, any of several) lists ``realtime=v1``.

    ``headers`` is a mapping (Starlette's ``Headers``, a ``dict``) or ASGI-style pairs (``bytes``
    allowed). The OpenAI SDKs send the header for the beta API and not for GA.
    """
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        name_s = name.decode("latin-1") if isinstance(name, bytes) else name
        value_s = value.decode("latin-1") if isinstance(value, bytes) else value
        if name_s.lower() != "openai-beta":
            continue
        if any(token.strip().lower() == "realtime=v1" for token in value_s.split(",")):
            return "beta"
    return "ga"


# ----------------------------------------------------------------------------------- turn detection

_RANGES: dict[str, tuple[float, float]] = {
    "threshold": (0.0, 1.0),
    "silence_duration_ms": (0, 60_000),
    "prefix_padding_ms": (0, 60_000),
}
_TD_KEYS = ("type", "threshold", "prefix_padding_ms", "silence_duration_ms")


@dataclass(frozen=True)
class TurnDetection:
    """``server_vad`` turn detection. ``None`` fields are unset (the server's defaults apply: 0.5,
    300 ms, 500 ms) and are left out of the JSON; numbers keep the type the client sent."""

    threshold: float | None = 0.5
    """Speech probability that starts speech, 0 to 1."""
    prefix_padding_ms: float | None = 300
    """Audio kept before the start of speech, 0 to 60000 ms."""
    silence_duration_ms: float | None = 500
    """Silence that ends an utterance, 0 to 60000 ms."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Other fields the client sent (``create_response``, ...): echoed, not used."""

    def merged(self, update: TurnDetection) -> TurnDetection:
        """This turn detection with the fields ``update`` sets."""
        return TurnDetection(
            self.threshold if update.threshold is None else update.threshold,
            self.prefix_padding_ms if update.prefix_padding_ms is None else update.prefix_padding_ms,
            self.silence_duration_ms if update.silence_duration_ms is None else update.silence_duration_ms,
            {**self.extra, **update.extra},
        )

    def to_json(self) -> dict[str, Any]:
        """``{"type": "server_vad", ...set fields, ...extra}``."""
        obj: dict[str, Any] = {"type": "server_vad"}
        for key in _TD_KEYS[1:]:
            if getattr(self, key) is not None:
                obj[key] = getattr(self, key)
        return obj | {k: v for k, v in self.extra.items() if k not in obj}

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        """Raises :class:`InvalidRequest` ``unsupported_turn_detection`` (not an object, or a type
        other than ``server_vad``) or ``invalid_value`` (a number out of range, NaN, a boolean)."""
        if not isinstance(obj, dict) or obj.get("type", "server_vad") != "server_vad":
            raise invalid("unsupported_turn_detection", "turn_detection must be server_vad or null")
        for key, (lo, hi) in _RANGES.items():
            value = obj.get(key, lo)
            if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
                raise invalid("invalid_value", f"turn_detection.{key} must be a number from {lo} to {hi}")
        extra = {k: v for k, v in obj.items() if k not in _TD_KEYS}
        return cls(obj.get("threshold"), obj.get("prefix_padding_ms"), obj.get("silence_duration_ms"), extra)


def _turn_detection_or_none(value: Any) -> TurnDetection | None:
    return None if value is None else TurnDetection.from_json(value)


# ----------------------------------------------------------------------------------- the session


@dataclass(frozen=True)
class TranscriptionSession:
    """The transcription session as the server reports it (defaults: a new session)."""

    input_audio_format: str = "pcm16"
    """A key of :data:`AUDIO_FORMATS`."""
    model: str = "whisper-1"
    language: str | None = "en"
    """``None``: detect the language."""
    prompt: str = ""
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    """``None``: manual commits only (no server VAD events)."""
    max_message_bytes: int | None = None
    """voxserve's extra: the largest event the server takes (larger ones close with 1009)."""
    keywords: tuple[str, ...] = ()
    """Words or phrases to expect (``transcription.keywords``)."""
    languages: tuple[str, ...] = ()
    """ISO 639-1 codes the audio may be in (``transcription.languages``); empty: any."""
    include: tuple[str, ...] = ()
    """Extra outputs (``include``): :data:`INCLUDE_LOGPROBS`."""

    @property
    def logprobs(self) -> bool:
        """Whether deltas and completions carry ``logprobs``."""
        return INCLUDE_LOGPROBS in self.include

    def apply(self, update: TranscriptionSessionUpdate | SessionUpdate) -> TranscriptionSession:
        """This session with ``update`` merged in, as the server applies it: an empty or ``null``
        language means detection, a ``null`` prompt is ``""``, turn detection fields merge."""
        td = self.turn_detection
        if update.turn_detection is None:
            td = None
        elif update.turn_detection is not KEEP:
            td = (td or TurnDetection(None, None, None)).merged(update.turn_detection)
        return replace(
            self,
            input_audio_format=self.input_audio_format
            if update.input_audio_format is KEEP
            else update.input_audio_format,
            model=self.model if update.model is KEEP else update.model,
            language=self.language if update.language is KEEP else (update.language or None),
            prompt=self.prompt if update.prompt is KEEP else (update.prompt or ""),
            turn_detection=td,
            keywords=self.keywords if update.keywords is KEEP else (update.keywords or ()),
            languages=self.languages if update.languages is KEEP else (update.languages or ()),
            include=self.include if update.include is KEEP else (update.include or ()),
        )

    def _transcription(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"model": self.model, "language": self.language, "prompt": self.prompt}
        if self.keywords:
            obj["keywords"] = list(self.keywords)
        if self.languages:
            obj["languages"] = list(self.languages)
        return obj

    def to_json(self, dialect: Dialect) -> dict[str, Any]:
        """The session object in ``dialect``'s shape."""
        td = None if self.turn_detection is None else self.turn_detection.to_json()
        extra: dict[str, Any] = {"include": list(self.include)} if self.include else {}
        if self.max_message_bytes is not None:
            extra["max_message_bytes"] = self.max_message_bytes
        if dialect == "beta":
            return {
                "object": "realtime.transcription_session",
                "input_audio_format": self.input_audio_format,
                "input_audio_transcription": self._transcription(),
                "turn_detection": td,
            } | extra
        fmt = _GA_NAMES.get(self.input_audio_format, self.input_audio_format)
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "audio": {
                "input": {
                    "format": {"type": fmt, "rate": 24000} if fmt == "audio/pcm" else {"type": fmt},
                    "transcription": self._transcription(),
                    "turn_detection": td,
                }
            },
        } | extra

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], dialect: Dialect) -> Self:
        """A session object from the server; absent fields take the defaults.

        Raises:
            InvalidRequest: ``invalid_event`` for a field of the wrong type, or what
                :meth:`TurnDetection.from_json` raises.
        """
        if dialect == "beta":
            fmt = get_str(obj, "input_audio_format", default="pcm16")
            transcription = obj.get("input_audio_transcription") or {}
            td = obj.get("turn_detection")
        else:
            audio_in = get_object(get_object(obj, "audio", default={}), "input", default={})
            ga_fmt = get_object(audio_in, "format", default={"type": "audio/pcm"})
            fmt_type = get_str(ga_fmt, "type", default="audio/pcm")
            fmt = GA_FORMATS.get(fmt_type, fmt_type)
            transcription = audio_in.get("transcription") or {}
            td = audio_in.get("turn_detection")
        if not isinstance(transcription, dict):
            raise invalid("invalid_event", "transcription must be an object")
        return cls(
            fmt,
            get_str(transcription, "model", default="whisper-1"),
            get_opt_str(transcription, "language"),
            get_opt_str(transcription, "prompt") or "",
            _turn_detection_or_none(td),
            None if obj.get("max_message_bytes") is None else get_int(obj, "max_message_bytes"),
            _strings(transcription.get("keywords"), "keywords", "invalid_event") or (),
            _strings(transcription.get("languages"), "languages", "invalid_event") or (),
            _strings(obj.get("include"), "include", "invalid_event") or (),
        )


# ----------------------------------------------------------------------------------- updates


def client_event_id(obj: Any) -> str | None:
    """The ``event_id`` of a client event, if it is a string (anything else is ignored)."""
    event_id = obj.get("event_id") if isinstance(obj, dict) else None
    return event_id if isinstance(event_id, str) else None


def _strings(value: Any, name: str, code: str = "invalid_value") -> tuple[str, ...] | None:
    """A JSON list of strings as a tuple; ``None`` for ``null``; ``code`` for anything else."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(code, f"{name} must be a list of strings")
    return tuple(str(v) for v in value)


def _include(value: Any) -> tuple[str, ...] | None | Keep:
    if value is KEEP:
        return Keep.KEEP
    include = _strings(value, "include")
    for item in include or ():
        if item != INCLUDE_LOGPROBS:
            raise invalid(
                "invalid_value", f"include: {describe(item)} is not {INCLUDE_LOGPROBS!r}", param="include"
            )
    return include


def _object(value: Any, name: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, ``{}`` if absent; ``invalid_value`` otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("invalid_value", f"{name} must be an object")
    return value


@dataclass(frozen=True)
class _Fields:
    """What an update asks for, validated (the order of the checks is the server's)."""

    input_audio_format: str | Keep
    model: str | Keep
    language: str | None | Keep
    prompt: str | None | Keep
    turn_detection: TurnDetection | None | Keep
    keywords: tuple[str, ...] | None | Keep
    languages: tuple[str, ...] | None | Keep
    include: tuple[str, ...] | None | Keep

    @classmethod
    def check(cls, fmt: Any, transcription: Any, td: Any, include: Any) -> _Fields:
        if fmt is not KEEP and (not isinstance(fmt, str) or fmt not in AUDIO_FORMATS):
            raise invalid("unsupported_format", f"unsupported input audio format {describe(fmt)}")
        turn_detection = td if td is KEEP else _turn_detection_or_none(td)
        transcription = _object(transcription, "transcription")
        for key in ("model", "language", "prompt"):
            value = transcription.get(key, "")
            if not isinstance(value, str | None) or (key == "model" and value is None):
                raise invalid("invalid_value", f"transcription.{key} must be a string")
        hints = {
            key: _strings(transcription[key], f"transcription.{key}") if key in transcription else KEEP
            for key in ("keywords", "languages")
        }
        return cls(
            fmt,
            transcription.get("model", KEEP),
            transcription.get("language", KEEP),
            transcription.get("prompt", KEEP),
            turn_detection,
            hints["keywords"],
            hints["languages"],
            _include(include),
        )


def _session(obj: Mapping[str, Any]) -> dict[str, Any]:
    session = obj.get("session")
    if not isinstance(session, dict):
        raise invalid("invalid_session", "session must be an object", param="session")
    return session


@dataclass(frozen=True)
class _Update(WireMessage):
    """The fields both dialects' updates carry."""

    dialect: ClassVar[Dialect]
    input_audio_format: str | Keep = KEEP
    """A key of :data:`AUDIO_FORMATS`."""
    model: str | Keep = KEEP
    language: str | None | Keep = KEEP
    """``None`` or ``""``: detect the language."""
    prompt: str | None | Keep = KEEP
    turn_detection: TurnDetection | None | Keep = KEEP
    """``None``: manual commits only; a :class:`TurnDetection` merges into the current one."""
    event_id: str | None = None
    """The client's id for this event (echoed in an error about it)."""
    keywords: tuple[str, ...] | None | Keep = KEEP
    """Words or phrases to expect; ``None`` clears them."""
    languages: tuple[str, ...] | None | Keep = KEEP
    """ISO 639-1 codes the audio may be in; ``None`` clears them."""
    include: tuple[str, ...] | None | Keep = KEEP
    """Extra outputs (:data:`INCLUDE_LOGPROBS`); ``None`` clears them."""

    def _transcription(self) -> dict[str, Any]:
        fields = {"model": self.model, "language": self.language, "prompt": self.prompt}
        obj: dict[str, Any] = {k: v for k, v in fields.items() if v is not KEEP}
        for key, hint in (("keywords", self.keywords), ("languages", self.languages)):
            if hint is not KEEP:
                obj[key] = None if hint is None else list(hint)
        return obj

    def _include(self) -> dict[str, Any]:
        if self.include is KEEP:
            return {}
        return {"include": None if self.include is None else list(self.include)}

    def _td(self) -> dict[str, Any]:
        if self.turn_detection is KEEP:
            return {}
        td = self.turn_detection
        return {"turn_detection": None if td is None else td.to_json()}

    def _envelope(self, session: dict[str, Any]) -> dict[str, Any]:
        head: dict[str, Any] = {"type": self.type}
        if self.event_id is not None:
            head["event_id"] = self.event_id
        return head | {"session": session}


@dataclass(frozen=True)
class TranscriptionSessionUpdate(_Update):
    """Beta ``transcription_session.update``; answered with ``transcription_session.updated``."""

    type: ClassVar[str] = "transcription_session.update"
    dialect: ClassVar[Dialect] = "beta"

    def to_json(self) -> dict[str, Any]:
        session: dict[str, Any] = {}
        if self.input_audio_format is not KEEP:
            session["input_audio_format"] = self.input_audio_format
        if transcription := self._transcription():
            session["input_audio_transcription"] = transcription
        return self._envelope(session | self._td() | self._include())

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """Raises :class:`InvalidRequest`: ``invalid_session``, ``unsupported_format``,
        ``unsupported_turn_detection``, ``invalid_value``."""
        session = _session(obj)
        fields = _Fields.check(
            session.get("input_audio_format", KEEP),
            session.get("input_audio_transcription") or {},
            session.get("turn_detection", KEEP),
            session.get("include", KEEP),
        )
        return cls(**vars(fields), event_id=client_event_id(obj))


@dataclass(frozen=True)
class SessionUpdate(_Update):
    """GA ``session.update`` (``session.type: "transcription"``); answered with ``session.updated``.

    A GA update always names its format: without one, the session goes back to ``pcm16`` (24 kHz),
    as the GA session object's default.
    """

    type: ClassVar[str] = "session.update"
    dialect: ClassVar[Dialect] = "ga"
    input_audio_format: str | Keep = "pcm16"
    session_type: str | None = "transcription"
    """``session.type``; voxserve serves transcription sessions whatever it says."""

    def to_json(self) -> dict[str, Any]:
        audio_in: dict[str, Any] = {}
        if self.input_audio_format is not KEEP:
            fmt = _GA_NAMES.get(self.input_audio_format, self.input_audio_format)
            audio_in["format"] = {"type": fmt, "rate": 24000} if fmt == "audio/pcm" else {"type": fmt}
        if transcription := self._transcription():
            audio_in["transcription"] = transcription
        audio_in |= self._td()
        session: dict[str, Any] = {} if self.session_type is None else {"type": self.session_type}
        return self._envelope(session | {"audio": {"input": audio_in}} | self._include())

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """Raises :class:`InvalidRequest`: ``invalid_session``, ``invalid_value`` (``audio``,
        ``audio.input`` or its ``format`` not objects), ``unsupported_format`` (also
        ``audio/pcm`` at another rate), ``unsupported_turn_detection``."""
        session = _session(obj)
        audio_in = _object(_object(session.get("audio"), "session.audio").get("input"), "audio.input")
        fmt_obj = _object(
            audio_in.get("format") or {"type": "audio/pcm", "rate": 24000}, "audio.input.format"
        )
        fmt_type = fmt_obj.get("type")
        fmt = GA_FORMATS.get(fmt_type, "?") if isinstance(fmt_type, str) else "?"
        if fmt == "pcm16" and fmt_obj.get("rate", 24000) != 24000:
            raise invalid("unsupported_format", "audio/pcm must be 24000 Hz")
        fields = _Fields.check(
            fmt,
            audio_in.get("transcription") or {},
            audio_in.get("turn_detection", KEEP),
            session.get("include", KEEP),
        )
        session_type = session.get("type")
        return cls(
            **vars(fields),
            event_id=client_event_id(obj),
            session_type=session_type if isinstance(session_type, str) else None,
        )
