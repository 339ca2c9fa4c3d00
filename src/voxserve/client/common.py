"""What the two front ends share: the base URL, the WebSocket options and close-to-error mapping of
the ``websockets`` library, and :func:`route_method`, which turns a route of the sans-I/O core into
a method with the route's name, docstring and signature."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from voxserve.client.errors import ClientError, closed_early, error_from_close, error_from_response
from voxserve.client.protocol.session import StreamProtocol

__all__ = [
    "CONNECT_ERRORS",
    "DEFAULT_BASE_URL",
    "ClientBase",
    "closed_error",
    "handshake_error",
    "no_answer",
    "raise_closed",
    "route_method",
    "sent_after_close",
    "sync_source_error",
]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_BASE_URL = "http://127.0.0.1:8000"

CONNECT_ERRORS = (OSError, TimeoutError, InvalidURI, WebSocketException)
"""What ``websockets``' ``connect`` raises when it cannot open a connection."""


class ClientBase:
    """The settings both clients keep: URLs, the API key's header, the timeout."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        if self.base_url.startswith("https://"):
            self.ws_base = "wss://" + self.base_url[len("https://") :]
        elif self.base_url.startswith("http://"):
            self.ws_base = "ws://" + self.base_url[len("http://") :]
        else:
            raise ValueError(f"base_url must start with http:// or https://, not {base_url!r}")
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _ws_options(self) -> dict[str, Any]:
        return {
            "additional_headers": self.headers or None,
            "open_timeout": self.timeout,
            "close_timeout": 5,
            "max_size": 16 * 2**20,
        }


def closed_error(exc: ConnectionClosed) -> ClientError | None:
    """The error for a closed connection (``None`` after a normal close)."""
    if exc.rcvd is None:
        return error_from_close(1006, "the connection was lost")
    return error_from_close(exc.rcvd.code, exc.rcvd.reason)


def raise_closed(exc: ConnectionClosed, failure: list[BaseException] | None = None) -> None:
    """After the server closed the connection: raise the sender's ``failure`` if there is one (it is
    why the client closed), else the close's error; return after a normal close."""
    if failure:
        raise failure[0] from None
    error = closed_error(exc)
    if error is not None:
        raise error from None


def no_answer(exc: ConnectionClosed) -> ClientError:
    """The error for a connection closed while the client waits for the handshake's answer."""
    return closed_error(exc) or closed_early("the server closed the connection")


def sent_after_close(exc: ConnectionClosed) -> ClientError:
    """The error for a message sent on a chat the server has closed."""
    return closed_error(exc) or closed_early("the chat has ended")


def handshake_error(exc: Exception) -> ClientError:
    """The error for a refused WebSocket handshake (the server's HTTP error) or no connection."""
    if isinstance(exc, InvalidStatus):
        return error_from_response(exc.response.status_code, bytes(exc.response.body or b""))
    return ClientError(f"could not connect: {exc}", code="connection_error")


def sync_source_error(protocol: StreamProtocol[Any]) -> TypeError:
    """What :class:`~voxserve.client.Client` raises for an async iterator."""
    unit = protocol.unit_name
    return TypeError(f"the sync Client takes {unit} or a sync iterator; use AsyncClient for async iterators")


def route_method(function: F, route: Callable[..., Any], owner: str) -> F:
    """``function`` (which takes ``self`` and then the route's arguments), named and documented as
    ``route``, with the route's signature for ``help()`` and ``inspect``."""
    function.__name__ = route.__name__
    function.__qualname__ = f"{owner}.{route.__name__}"
    function.__doc__ = route.__doc__
    signature = inspect.signature(route)
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    parameters = [this, *signature.parameters.values()]
    function.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=inspect.Signature.empty
    )
    return function
