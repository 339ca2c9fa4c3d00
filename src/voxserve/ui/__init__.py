"""The web UI at ``/ui``: a Gradio app mounted on the server's own FastAPI app.

``mount_ui(app)`` is called by :func:`voxserve.api.app.create_app` when ``ui_enabled`` is on. It mounts
a placeholder that builds the Gradio app on the first visit to ``/ui``: Gradio and the UI's Blocks
held 77 MB of the server process's memory that a server nobody opens the UI of never needs. Gradio is
imported then, off the event loop, with analytics switched off before the import so the UI never
phones home. The tabs talk to the engines through ``app.state.vox`` (the same registry, settings and
admission as the HTTP routes), inside Gradio's async handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["SIGNOUT_SUFFIX", "UI_PATH", "LazyUI", "build_gradio_app", "mount_ui"]

UI_PATH = "/ui"
SIGNOUT_SUFFIX = "/signout"
"""The UI's sign-out form posts to ``/ui/signout``; the security middleware answers it, never a route.
(Not ``/logout``: that is a route of Gradio's own login, which voxserve does not use.)"""


def mount_ui(app: Any) -> LazyUI:
    """Mount the UI at :data:`UI_PATH` on ``app``, built on its first visit (see :class:`LazyUI`);
    the app's lifespan stops it."""
    lazy = LazyUI(app)
    app.mount(UI_PATH, lazy)
    outer = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with outer(a) as state:
            try:
                yield state
            finally:
                await lazy.close()

    app.router.lifespan_context = lifespan
    return lazy


class LazyUI:
    """An ASGI app that stands at :data:`UI_PATH` for the Gradio app and builds it on the first
    request (HTTP or WebSocket) that reaches it; later requests go straight to it."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._inner: Any = None
        self._app_only: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    @property
    def _gradio(self) -> Any:
        """The Gradio app, started or only built; None before either."""
        return self._inner if self._inner is not None else self._app_only

    @property
    def built(self) -> bool:
        """Whether the Gradio app exists (someone visited the UI)."""
        return self._gradio is not None

    @property
    def routes(self) -> list[Any]:
        """The Gradio app's routes once built (Starlette's ``Mount.routes`` reads them), else none."""
        return list(self._gradio.routes) if self._gradio is not None else []

    @property
    def blocks(self) -> Any:
        """The UI's ``gr.Blocks`` once built, else None."""
        return self._gradio.get_blocks() if self._gradio is not None else None

    def build_without_starting(self) -> None:
        """Build the Gradio app now and route to it, without its start-up events: for walking the
        app's routes in tests. A request that comes later still starts it."""
        if not self.built:
            self._app_only = build_gradio_app(self._app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        inner = self._inner if self._inner is not None else await self._build()
        await inner(scope, receive, send)

    async def _build(self) -> Any:
        async with self._lock:
            if self._inner is None:
                # Importing Gradio and building the Blocks take a second or more of CPU: a thread keeps
                # the event loop serving the other clients meanwhile.
                gradio_app = self._app_only or await asyncio.to_thread(build_gradio_app, self._app)
                stack = contextlib.AsyncExitStack()
                # What gr.mount_gradio_app's lifespan does at start-up (its cleanup tasks, the queue).
                await stack.enter_async_context(gradio_app.router.lifespan_context(gradio_app))
                blocks = gradio_app.get_blocks()
                blocks.run_startup_events()
                await blocks.run_extra_startup_events()
                self._stack, self._inner = stack, gradio_app
        return self._inner

    async def close(self) -> None:
        """Stop the Gradio app if it was built (the server is stopping)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()


def build_gradio_app(app: Any) -> Any:
    """Build the UI's Gradio app for ``app``: Gradio mounts it on ``app`` (so that it sees the app's
    middleware), and it is taken back out, with the lifespan Gradio wrapped, for :class:`LazyUI` to
    serve and start."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from voxserve.ui.app import mount

    routes = app.router.routes
    lifespan = app.router.lifespan_context
    count = len(routes)
    mount(app, UI_PATH)
    gradio_mount = routes.pop(count)
    app.router.lifespan_context = lifespan
    return gradio_mount.app
