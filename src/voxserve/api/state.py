"""Where FastAPI keeps the server's :class:`~voxserve.state.AppState`."""

from __future__ import annotations

from fastapi import Request

from voxserve.state import OPENAI_TTS_MODELS, AppState

__all__ = ["OPENAI_TTS_MODELS", "AppState", "get_state"]


def get_state(request: Request) -> AppState:
    """The app state of ``request``'s app (a FastAPI dependency)."""
    state: AppState = request.app.state.vox
    return state
