"""How the web UI reports errors: voxserve's own messages, never an exception's internals.

Gradio answers a failed event with a message the page shows in a toast. A :class:`gradio.Error` is
always shown, as its message (HTML, sanitized by the page). Any other exception is shown as its
``str()`` only when the app is mounted with ``show_error=True`` (the default of
``gr.mount_gradio_app``); with ``False`` the page gets no text at all and shows a bare "Error". The UI
is mounted with ``show_error=False`` and every event handler is wrapped by :func:`ui_handler`, so:

* a :class:`~voxserve.errors.VoxserveError` (bad input, at capacity, unknown voice …) is shown with
  its message, which is written for clients, and its stable ``code``: ``unknown voice 'x'; GET
  /v1/audio/voices lists the voices (unknown_voice)``;
* a ``gr.Error`` raised by a tab (``Type some text to speak.``) is shown as it is;
* anything else is logged with its traceback under a short reference, and the page shows only a
  generic message with that reference — an exception's text can hold paths, settings or other
  internals, so it never leaves the server.
"""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import gradio as gr

from voxserve.errors import VoxserveError

__all__ = ["GENERIC_ERROR", "ui_handler", "user_error"]

_log = logging.getLogger("voxserve.ui")

GENERIC_ERROR = "Something went wrong on the server (reference {ref}); the details are in its log."
"""What the page shows for an unexpected exception; ``{ref}`` is the reference the log line carries."""

F = TypeVar("F", bound=Callable[..., Any])


def user_error(exc: VoxserveError) -> gr.Error:
    """The toast for a voxserve error: its message, then its stable code in parentheses (the code the
    HTTP API reports, so the two can be matched). Escaped: the page renders messages as HTML, and a
    message may quote the user's input, such as a voice name."""
    return gr.Error(
        html.escape(f"{exc.message} ({exc.code})"),
        print_exception=False,  # an expected error: no traceback in the server's log
    )


def _shown(exc: Exception, where: str) -> gr.Error:
    """The ``gr.Error`` to raise in place of ``exc``."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, VoxserveError):
        _log.debug("UI %s: %s (%s)", where, exc.message, exc.code)
        return user_error(exc)
    ref = uuid.uuid4().hex[:12]
    _log.error("UI %s failed (reference %s)", where, ref, exc_info=exc)
    # Logged here, with the reference: Gradio need not print the traceback a second time.
    return gr.Error(GENERIC_ERROR.format(ref=ref), print_exception=False)


def ui_handler(fn: F) -> F:
    """Wrap a Gradio event handler (a function, coroutine function or async generator function) so
    that it only ever fails with a ``gr.Error`` whose text is fit for the page; see the module.

    The wrapper keeps ``fn``'s kind and signature (``functools.wraps``), which Gradio inspects to
    pass ``gr.Request`` and to stream a generator's values. Cancellation and generator shutdown
    (``BaseException``) pass through untouched.
    """
    where = getattr(fn, "__qualname__", repr(fn))
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def generator(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            # aclosing: when Gradio closes this generator early, the handler's own cleanup runs now.
            async with contextlib.aclosing(fn(*args, **kwargs)) as values:
                try:
                    async for value in values:
                        yield value
                except Exception as exc:
                    raise _shown(exc, where) from None

        return cast(F, generator)
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def coroutine(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                raise _shown(exc, where) from None

        return cast(F, coroutine)

    @functools.wraps(fn)
    def function(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _shown(exc, where) from None

    return cast(F, function)
