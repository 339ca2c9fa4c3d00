"""The web UI at ``/ui``: a Gradio app mounted on the server's own FastAPI app.

``mount_ui(app)`` is called by :func:`voxserve.api.app.create_app` when ``ui_enabled`` is on. Gradio
is imported here, lazily, so ``import voxserve`` stays cheap; analytics are switched off before the
import so the UI never phones home. The tabs talk to the engines through ``app.state.vox`` (the same
registry, settings and admission as the HTTP routes), inside Gradio's async handlers.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["SIGNOUT_SUFFIX", "UI_PATH", "mount_ui"]

UI_PATH = "/ui"
SIGNOUT_SUFFIX = "/signout"
"""The UI's sign-out form posts to ``/ui/signout``; the security middleware answers it, never a route.
(Not ``/logout``: that is a route of Gradio's own login, which voxserve does not use.)"""


def mount_ui(app: Any) -> None:
    """Build the UI and mount it at :data:`UI_PATH` on ``app`` (it shares the app's lifespan)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from voxserve.ui.app import mount

    mount(app, UI_PATH)
