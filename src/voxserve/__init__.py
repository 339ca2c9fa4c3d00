"""voxserve: a self-hosted real-time speech server.

Importing voxserve (or any of its modules) starts no process, thread or model: engines start from the
server's lifespan or an explicit ``start()``.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
