"""voxserve: a self-hosted real-time speech server, and its Python library.

Importing voxserve (or any of its modules) starts no process, thread or model: engines start from the
server's lifespan or an explicit ``start()``. The library's names are imported on first use::

    from voxserve import AsyncClient, Client, SpeechStream, iterate_in_thread
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxserve.client import AsyncClient, Client, ClientError
    from voxserve.runtime.bridge import iterate_in_thread
    from voxserve.speech_stream import SpeechStream

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "ClientError", "SpeechStream", "__version__", "iterate_in_thread"]

_LAZY = {
    "AsyncClient": "voxserve.client",
    "Client": "voxserve.client",
    "ClientError": "voxserve.client",
    "SpeechStream": "voxserve.speech_stream",
    "iterate_in_thread": "voxserve.runtime.bridge",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'voxserve' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
