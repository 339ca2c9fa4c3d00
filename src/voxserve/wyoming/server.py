"""Listen for Wyoming clients on ``wyoming_uri`` (the wyoming package's TCP server), one
:class:`~voxserve.wyoming.handler.WyomingHandler` per connection, all on one :class:`AppState`."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from wyoming.server import AsyncTcpServer

from voxserve.config import wyoming_address
from voxserve.state import AppState
from voxserve.wyoming.handler import WyomingHandler

__all__ = ["HEADER_LINE_LIMIT", "WyomingServer", "start_wyoming"]

_log = logging.getLogger("voxserve.wyoming")

HEADER_LINE_LIMIT = 65_536
"""Longest header line (bytes); data and payload have ``wyoming_max_event_bytes``."""


class WyomingServer(AsyncTcpServer):
    """The wyoming package's TCP server with a bounded header line."""

    async def start_for(self, state: AppState) -> None:
        factory = partial(WyomingHandler, state=state)
        callback = partial(self._handler_callback, factory)
        self._server = await asyncio.start_server(
            callback, host=self.host, port=self.port, limit=HEADER_LINE_LIMIT
        )
        await self._server.start_serving()

    async def stop(self) -> None:
        """Stop listening and end every connection (their requests are cancelled)."""
        if self._server is not None:
            self._server.close()
        await super().stop()
        tasks = list(self._handlers)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def start_wyoming(state: AppState) -> WyomingServer | None:
    """Start the Wyoming server on ``state.settings.wyoming_uri`` (``None`` when it is unset)."""
    uri = state.settings.wyoming_uri
    if not uri:
        return None
    host, port = wyoming_address(uri)
    server = WyomingServer(host, port)
    await server.start_for(state)
    _log.info("voxserve Wyoming server on tcp://%s:%d", host, port)
    return server
