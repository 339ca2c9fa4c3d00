"""The web UI shows voxserve's own error messages, never an exception's internals.

The handlers are driven through Gradio's real HTTP API (``/ui/gradio_api/call/<api_name>``) on an app
mounted by :func:`voxserve.ui.app.mount`, in-process (Starlette's TestClient runs Gradio's startup);
no engine or worker starts.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import gradio as gr
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from voxserve.api.app import create_app
from voxserve.config import Settings
from voxserve.errors import Unavailable, UnknownVoice, VoxserveError
from voxserve.ui import speak as speak_tab
from voxserve.ui.app import UiContext, mount
from voxserve.ui.errors import GENERIC_ERROR, ui_handler, user_error

SECRET = "secret-internal-detail /srv/voxserve/models/key=hunter2"
"""What an unexpected exception says: it must never reach the page."""


def _errors_tab(ctx: UiContext) -> None:
    with gr.Tab("Errors"):
        box = gr.Textbox()
        out = gr.Textbox()

        @ui_handler
        async def wrapped(value: str) -> AsyncIterator[str]:
            yield "started"
            if value == "internal":
                raise RuntimeError(SECRET)
            if value == "capacity":
                raise Unavailable("The server is busy; try again in a moment.", code="at_capacity")
            raise UnknownVoice(f"voice {value!r} is not installed")

        async def unwrapped(value: str) -> str:
            raise KeyError(SECRET)  # a handler someone forgot to wrap: show_error=False still hides it

        box.submit(wrapped, box, out, api_name="wrapped")
        box.change(unwrapped, box, out, api_name="unwrapped")


def _call(client: TestClient, api_name: str, *data: Any) -> list[tuple[str, Any]]:
    """(event, data) of every server-sent event of one call through Gradio's HTTP API."""
    started = client.post(f"/ui/gradio_api/call/{api_name}", json={"data": list(data)})
    assert started.status_code == 200, started.text
    stream = client.get(f"/ui/gradio_api/call/{api_name}/{started.json()['event_id']}")
    assert stream.status_code == 200, stream.text
    events = []
    for block in stream.text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    assert SECRET not in stream.text and "hunter2" not in stream.text and "Traceback" not in stream.text
    return events


def _error(events: list[tuple[str, Any]]) -> dict[str, Any]:
    assert events[-1][0] == "error", events
    error: dict[str, Any] = events[-1][1]
    return error


@pytest.fixture
def errors_client() -> Iterator[TestClient]:
    app = FastAPI()
    app.state.vox = create_app(Settings(ui_enabled=False)).state.vox
    mount(app, "/ui", tabs=[_errors_tab])
    with TestClient(app) as client:  # runs Gradio's startup (its queue)
        yield client


def test_unexpected_exceptions_show_only_a_generic_message(
    errors_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="voxserve.ui"):
        error = _error(_call(errors_client, "wrapped", "internal"))
    message = error["error"]
    prefix = GENERIC_ERROR.split("{ref}")[0]
    assert message.startswith(prefix) and error["title"] == "Error", error
    ref = message[len(prefix) :].split(")")[0]
    # The server's log has the details, under the reference the page shows.
    logged = [r for r in caplog.records if ref in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert SECRET in str(logged[0].exc_info[1])


def test_a_handler_that_is_not_wrapped_still_shows_no_internals(errors_client: TestClient) -> None:
    # show_error=False: Gradio sends no text for an exception that is not a gr.Error.
    assert _error(_call(errors_client, "unwrapped", "x")) == {"error": None}


def test_voxserve_errors_show_their_message_and_code(errors_client: TestClient) -> None:
    error = _error(_call(errors_client, "wrapped", "capacity"))
    assert error["error"] == "The server is busy; try again in a moment. (at_capacity)"
    # The page renders messages as HTML: a message that quotes the user's input is escaped.
    events = _call(errors_client, "wrapped", "<img src=x onerror=alert(1)>")
    assert events[0] == ("generating", ["started"])  # what came before the error was shown
    error = _error(events)
    assert error["error"] == (
        "voice &#x27;&lt;img src=x onerror=alert(1)&gt;&#x27; is not installed (unknown_voice)"
    )


def test_the_speak_tab_maps_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Speak tab: an unknown voice shows voxserve's message, a bug shows nothing of itself."""
    failures: list[Exception] = []

    async def failing_start_speech(*args: Any, **kwargs: Any) -> Any:
        raise failures.pop(0)

    monkeypatch.setattr(speak_tab, "start_speech", failing_start_speech)
    monkeypatch.setattr(speak_tab, "ensure_ffmpeg", lambda cache_dir: None)
    app = FastAPI()
    app.state.vox = create_app(Settings(ui_enabled=False)).state.vox
    mount(app, "/ui", tabs=[speak_tab.build_speak_tab])
    with TestClient(app) as client:
        failures.append(UnknownVoice("voice 'nobody' is not installed"))
        error = _error(_call(client, "speak", "Hello.", "nobody", 1.0, "mp3"))
        assert error["error"] == "voice &#x27;nobody&#x27; is not installed (unknown_voice)"

        failures.append(OSError(SECRET))
        error = _error(_call(client, "speak", "Hello.", "nobody", 1.0, "mp3"))
        assert error["error"].startswith(GENERIC_ERROR.split("{ref}")[0])

        # The tab's own messages (a gr.Error) pass through as they are.
        error = _error(_call(client, "speak", "   ", "nobody", 1.0, "mp3"))
        assert error["error"] == "Type some text to speak."


# --- ui_handler on its own ------------------------------------------------------------------------------


async def test_ui_handler_keeps_the_kind_and_signature_of_the_handler() -> None:
    async def gen(text: str, request: gr.Request) -> AsyncIterator[str]:
        yield text

    async def coro(text: str) -> str:
        return text

    def func(text: str) -> str:
        return text

    assert inspect.isasyncgenfunction(ui_handler(gen))
    assert inspect.iscoroutinefunction(ui_handler(coro))
    assert not inspect.iscoroutinefunction(ui_handler(func))
    assert list(inspect.signature(ui_handler(gen)).parameters) == ["text", "request"]
    assert [v async for v in ui_handler(gen)("a", None)] == ["a"]  # type: ignore[arg-type]
    assert await ui_handler(coro)("b") == "b"
    assert ui_handler(func)("c") == "c"


async def test_ui_handler_closes_the_handler_when_gradio_stops_early() -> None:
    closed: list[bool] = []

    async def gen() -> AsyncIterator[int]:
        try:
            for i in range(10):
                yield i
        finally:
            closed.append(True)

    values = ui_handler(gen)()
    assert await anext(values) == 0
    await values.aclose()  # type: ignore[attr-defined]
    assert closed == [True]


def test_ui_handler_maps_exceptions_in_plain_functions() -> None:
    def bug() -> None:
        raise ValueError(SECRET)

    def refused() -> None:
        raise VoxserveError("the engine failed", code="synthesis_failed")

    def own() -> None:
        raise gr.Error("Type some text to speak.")

    with pytest.raises(gr.Error) as caught:
        ui_handler(bug)()
    assert SECRET not in caught.value.message and caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    with pytest.raises(gr.Error) as caught:
        ui_handler(refused)()
    assert caught.value.message == "the engine failed (synthesis_failed)"
    with pytest.raises(gr.Error) as caught:
        ui_handler(own)()
    assert caught.value.message == "Type some text to speak."


def test_user_error_escapes_html() -> None:
    error = user_error(UnknownVoice('voice "<b>x</b>" & co'))
    assert error.message == "voice &quot;&lt;b&gt;x&lt;/b&gt;&quot; &amp; co (unknown_voice)"
    assert not error.print_exception
