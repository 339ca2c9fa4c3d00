"""Listen for Wyoming clients on ``wyoming_uri`` (the wyoming package's TCP server), one
:class:`~voxserve.wyoming.handler.WyomingHandler` per connection, all on one :class:`AppState`; with
``wyoming_zeroconf``, announced by mDNS (:mod:`voxserve.wyoming.discovery`)."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from wyoming.server import AsyncTcpServer

from voxserve.config import wyoming_address
from voxserve.state import AppState
from voxserve.wyoming.discovery import WyomingAnnouncer, plan_announcement
from voxserve.wyoming.handler import WyomingHandler

__all__ = ["HEADER_LINE_LIMIT", "WyomingServer", "start_wyoming"]

_log = logging.getLogger("voxserve.wyoming")

HEADER_LINE_LIMIT = 65_536
"""Longest header line (bytes); data and payload have ``wyoming_max_event_bytes``."""


class WyomingServer(AsyncTcpServer):
    """The wyoming package's TCP server with a bounded header line."""

    announcer: WyomingAnnouncer | None = None
    """The zeroconf announcement (``wyoming_zeroconf``), stopped with the server."""

    async def start_for(self, state: AppState) -> None:
        factory = partial(WyomingHandler, state=state)
        callback = partial(self._handler_callback, factory)
        self._server = await asyncio.start_server(
            callback, host=self.host, port=self.port, limit=HEADER_LINE_LIMIT
        )
        await self._server.start_serving()

    async def stop(self) -> None:
        """Stop listening (the zeroconf announcement says goodbye first) and end every connection
        (their requests are cancelled)."""
        announcer, self.announcer = self.announcer, None
        if announcer is not None:
            await announcer.stop()
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
    if state.settings.wyoming_zeroconf:
        try:
            announcement = plan_announcement(host, port, state.settings.wyoming_zeroconf_name)
        except OSError as exc:  # no route to announce on: the server is still there by host and port
            _log.error("Wyoming zeroconf: no interface to announce on: %s", exc)
        else:
            server.announcer = WyomingAnnouncer(announcement)
            server.announcer.start()
    return server
