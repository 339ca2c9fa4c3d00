"""The Gradio Blocks of the web UI and its mounting on the FastAPI app.

Tabs are built by the functions in :data:`TAB_BUILDERS`, in order; each gets the :class:`UiContext`
and creates its own ``gr.Tab``. Adding a tab is one import and one list entry. Every event handler is
wrapped by :func:`voxserve.ui.errors.ui_handler`, and the app is mounted with ``show_error=False``, so
the page shows voxserve's own error messages and never an exception's text.

When API keys are configured, the page has a "Sign out" button: a plain form that posts to
``/ui/signout`` (answered by :class:`voxserve.api.security.SecurityMiddleware`, which ends the
session and sends the browser back to the sign-in form).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import gradio as gr
from fastapi import FastAPI

from voxserve.state import AppState
from voxserve.ui import SIGNOUT_SUFFIX
from voxserve.ui.chat import build_chat_tab
from voxserve.ui.speak import build_speak_tab
from voxserve.ui.transcribe import build_transcribe_tab

__all__ = ["TAB_BUILDERS", "UiContext", "build_ui", "mount"]

_log = logging.getLogger("voxserve.ui")


@dataclass
class UiContext:
    """What every tab builder gets: the app (its ``state.vox`` holds registry and settings)."""

    app: FastAPI
    blocks: gr.Blocks
    """The UI's Blocks (for page-level events such as ``load`` and ``unload``)."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Per-tab shared objects (for example a tab's session table), keyed by the tab's name."""

    @property
    def state(self) -> AppState:
        state: AppState = self.app.state.vox
        return state


TabBuilder = Callable[[UiContext], None]

TAB_BUILDERS: list[TabBuilder] = [
    build_speak_tab,
    build_transcribe_tab,
    build_chat_tab,
]

# System fonts only: Gradio's default theme imports Google Fonts, which an offline page waits on.
_SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


# Browsers clean up microphone audio for calls (noise suppression, automatic gain) in ways that hurt
# speech recognition; Gradio asks for `{audio: true}`, so the UI's page asks for raw-ish audio instead.
_MIC_HEAD = """<script>
(() => {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) return;
  const original = md.getUserMedia.bind(md);
  md.getUserMedia = (constraints) => {
    if (constraints && constraints.audio === true) {
      const raw = {echoCancellation: false, noiseSuppression: false, autoGainControl: false};
      constraints = {...constraints, audio: raw};
    }
    return original(constraints);
  };
})();
</script>"""


# A plain form, not a Gradio event: signing out is answered by the security middleware (a redirect
# with the cookie cleared), which must navigate the whole page. The action is relative to the page
# (/ui/), so it also works under a proxy's path prefix. The session cookie is SameSite=Lax and the
# middleware checks the request's Origin, so no other site can post this form for the user.
_SIGNOUT_FORM = f"""<form method="post" action=".{SIGNOUT_SUFFIX}" id="signout-form"
  style="display:flex;justify-content:flex-end;margin:0">
<button type="submit" id="signout" class="lg secondary">Sign out</button>
</form>"""


def _theme() -> gr.themes.Base:
    return gr.themes.Default(font=_SANS, font_mono=_MONO)


def build_ui(app: FastAPI, tabs: list[TabBuilder] | None = None) -> gr.Blocks:
    """The UI's Blocks for ``app``; nothing starts until the app's lifespan runs."""
    state: AppState = app.state.vox
    # Served files (downloads, uploaded audio) expire after an hour, checked every hour.
    with gr.Blocks(title="voxserve", analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
        ctx = UiContext(app, blocks)
        with gr.Row(equal_height=True):
            gr.Markdown("# voxserve\nSpeak text, transcribe speech. Everything runs on this server.", scale=4)
            if state.settings.api_keys:  # without keys there is no session to end
                gr.HTML(_SIGNOUT_FORM, elem_id="signout-bar", scale=1, min_width=120)
        with gr.Tabs():
            for builder in TAB_BUILDERS if tabs is None else tabs:
                builder(ctx)
    # No event is capped by Gradio's queue: the engine pools do admission (503/at capacity).
    blocks.queue(default_concurrency_limit=None)
    built: gr.Blocks = blocks
    return built


T = TypeVar("T")


def _with_running_loop(fn: Callable[[], T]) -> T:
    """Run ``fn`` where a loop is running.

    Building and mounting Blocks makes asyncio locks; with no running loop, Gradio creates a new event
    loop for each and sets it as the thread's loop, never closing it (leaked loops and sockets). In a
    throwaway runner that does not touch the thread's loop, it finds one running instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:

        async def call() -> T:
            return fn()

        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
            return runner.run(call())
    return fn()


def mount(app: FastAPI, path: str, tabs: list[TabBuilder] | None = None) -> None:
    """Mount :func:`build_ui` at ``path`` on ``app`` (same lifespan, same middleware); ``tabs``
    replaces :data:`TAB_BUILDERS` (tests)."""
    _with_running_loop(lambda: _mount(app, path, tabs))


def _mount(app: FastAPI, path: str, tabs: list[TabBuilder] | None) -> None:
    settings = app.state.vox.settings
    blocks = build_ui(app, tabs)
    gr.mount_gradio_app(
        app,
        blocks,
        path=path,
        # Gradio's default (True) sends any exception's str() to the page. With False only gr.Error
        # messages reach it: ui_handler turns voxserve's errors into those and logs anything else.
        show_error=False,
        footer_links=[],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        enable_monitoring=False,
        max_file_size=settings.max_upload_bytes,
        theme=_theme(),
        head=_MIC_HEAD,
    )
