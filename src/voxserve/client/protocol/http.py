"""HTTP exchanges, sans I/O: what to send (:class:`Request`) and how to read what comes back.

A route is a function that returns a :class:`Call` (one response, read whole) or a
:class:`StreamCall` (a body read as it arrives, through a :class:`Decoder`). The front ends send the
request with httpx and hand the response back: :meth:`Call.result` and the decoders are the only
places that read a response, so both clients read every route the same way.
"""

from __future__ import annotations

import json
import mimetypes
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeAlias, TypeVar

from voxserve.client.errors import error_from_response, invalid_event
from voxserve.protocol.sse import SSEDecoder

__all__ = [
    "Call",
    "Decoder",
    "FileInput",
    "Passthrough",
    "Request",
    "Response",
    "SSEParser",
    "StreamCall",
    "Upload",
    "content",
    "json_object",
    "json_value",
]

T = TypeVar("T")

FileInput: TypeAlias = bytes | str | os.PathLike[str] | IO[bytes]
"""A file to upload: its bytes, a path, or a binary file object."""


class Response(Protocol):
    """What the core reads of a complete HTTP response (``httpx.Response`` is one)."""

    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class Upload:
    """A multipart ``file`` field. Reading it is I/O, so the front end calls :meth:`read` (the asyncio
    one in a thread)."""

    file: FileInput
    filename: str | None = None

    def read(self) -> tuple[str, bytes, str]:
        """``(filename, content, content type)``; reads a path or a file object (blocking)."""
        file, filename = self.file, self.filename
        if isinstance(file, bytes | bytearray | memoryview):
            data, name = bytes(file), filename or "audio.wav"
        elif isinstance(file, str | os.PathLike):
            path = Path(file)
            data, name = path.read_bytes(), filename or path.name
        else:
            data = file.read()
            name = filename or Path(str(getattr(file, "name", "") or "audio.wav")).name
        return name, data, content_type(name)


_AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".oga": "audio/ogg",
    ".flac": "audio/flac",
    ".webm": "audio/webm",
    ".m4a": "audio/mp4",
    ".mp4": "audio/mp4",
    ".aac": "audio/aac",
}


def content_type(name: str) -> str:
    """The upload's content type: a fixed table for audio (``mimetypes`` answers differently by
    machine and by what other libraries registered, ``audio/x-wav`` or ``audio/wav``), else a guess."""
    suffix = Path(name).suffix.lower()
    return _AUDIO_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


@dataclass(frozen=True)
class Request:
    """One HTTP request, relative to the client's base URL."""

    method: str
    path: str
    json: Any = None
    """A JSON body (``None``: none)."""
    form: Mapping[str, Any] | None = None
    """Multipart form fields (sent with :attr:`upload`)."""
    upload: Upload | None = None
    headers: Mapping[str, str] | None = None
    """Headers of this request only (the client's own, such as the API key, are always sent)."""

    def options(self, file: tuple[str, bytes, str] | None = None) -> dict[str, Any]:
        """Keyword arguments for ``httpx``'s ``request``/``stream``; ``file``: the upload, read."""
        kwargs: dict[str, Any] = {}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.form is not None:
            kwargs["data"] = dict(self.form)
        if file is not None:
            kwargs["files"] = {"file": file}
        if self.headers:
            kwargs["headers"] = dict(self.headers)
        return kwargs


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request whose response is read whole and turned into the route's result."""

    request: Request
    read: Callable[[Response], T]
    also_ok: frozenset[int] = field(default=frozenset())
    """Error statuses that still carry a result (``/ready`` answers 503 while engines start)."""

    def result(self, response: Response) -> T:
        """The result, or the :class:`ClientError` the server's error response describes."""
        if response.status_code >= 400 and response.status_code not in self.also_ok:
            raise error_from_response(response.status_code, response.content)
        return self.read(response)


class Decoder(Protocol[T]):
    """Reads a streamed body: ``feed`` each chunk as it arrives, ``end`` once the body is complete."""

    def feed(self, chunk: bytes) -> list[T]: ...

    def end(self) -> list[T]: ...


@dataclass(frozen=True)
class StreamCall(Generic[T]):
    """A request whose body is read as it arrives (error statuses are read whole and raised)."""

    request: Request
    decoder: Callable[[], Decoder[T]]
    """Makes a fresh decoder for each response."""
    chunk_bytes: int | None = None
    """Size of the chunks to read (``None``: as they come)."""


class Passthrough:
    """The body's bytes, as they come (streamed audio, a download)."""

    def feed(self, chunk: bytes) -> list[bytes]:
        return [chunk] if chunk else []

    def end(self) -> list[bytes]:
        return []


class SSEParser:
    """Server-sent events line by line, for callers that split lines themselves: :meth:`feed`
    returns each complete event's ``data`` as a JSON object (``[DONE]`` and non-objects are
    skipped; data that is not JSON raises :class:`ClientError` ``invalid_event``)."""

    def __init__(self) -> None:
        self._sse = SSEDecoder()

    def feed(self, line: str) -> dict[str, Any] | None:
        event = self._sse.feed_line(line.rstrip("\r\n"))
        return json_event(event.data) if event is not None else None

    def end(self) -> dict[str, Any] | None:
        """The event being built (at the end of the stream, when its blank line never came)."""
        event = self._sse.flush()
        return json_event(event.data) if event is not None else None


def json_event(data: str) -> dict[str, Any] | None:
    """The JSON object of an event's data (``None`` for ``[DONE]`` and for JSON that is not an object)."""
    if not data or data == "[DONE]":
        return None
    obj = json_value(data)
    return obj if isinstance(obj, dict) else None


def json_value(data: str | bytes) -> Any:
    """JSON from the server; anything else is :class:`ClientError` ``invalid_event``."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise invalid_event() from None


def json_object(response: Response) -> Any:
    """A response's JSON body (an object, or a list for ``data`` arrays)."""
    return json_value(response.content)


def content(response: Response) -> bytes:
    """A response's body (an audio file)."""
    return response.content
