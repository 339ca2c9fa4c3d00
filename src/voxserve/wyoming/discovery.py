"""Zeroconf (mDNS) announcement of the Wyoming server as ``_wyoming._tcp.local.``, what wyoming-piper
and wyoming-faster-whisper do with ``--zeroconf``: Home Assistant then lists voxserve under *Discovered*
and adds it with one click. Off unless ``wyoming_zeroconf`` is set: nothing is sent otherwise.

Where it is announced follows the Wyoming host: a wildcard (``0.0.0.0``, ``::``) on every interface,
with the address of the default route (no packet is sent to find it); a given address only on that
interface (loopback: this machine only). A failed announcement is logged and the server goes on:
Home Assistant can still add it by host and port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

__all__ = ["SERVICE_TYPE", "Announcement", "WyomingAnnouncer", "plan_announcement"]

_log = logging.getLogger("voxserve.wyoming")

SERVICE_TYPE = "_wyoming._tcp.local."
"""The service type Home Assistant's Wyoming integration browses for."""

_MDNS_GROUP = "224.0.0.251"
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


@dataclass(frozen=True)
class Announcement:
    """What is announced where: the instance ``name``, the IPv4 ``address`` and ``port`` Home
    Assistant connects to, and the ``interfaces`` mDNS runs on (``None``: all of them)."""

    name: str
    address: str
    port: int
    interfaces: tuple[str, ...] | None

    @property
    def service_name(self) -> str:
        return f"{self.name}.{SERVICE_TYPE}"

    def service_info(self) -> AsyncServiceInfo:
        from zeroconf.asyncio import AsyncServiceInfo

        return AsyncServiceInfo(
            SERVICE_TYPE,
            self.service_name,
            port=self.port,
            addresses=[socket.inet_aton(self.address)],
        )


def default_route_address() -> str:
    """This machine's address on the interface mDNS would leave by (a UDP ``connect`` sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((_MDNS_GROUP, 5353))
        address: str = probe.getsockname()[0]
    return address


def plan_announcement(host: str, port: int, name: str) -> Announcement:
    """Where to announce a Wyoming server bound to ``host``: see the module's text. ``ValueError`` for
    an IPv6 address (the announcement is IPv4, as the reference servers make it) or a name that does
    not resolve."""
    if host in _WILDCARDS:
        return Announcement(name, default_route_address(), port, None)
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            raise ValueError(f"zeroconf: wyoming_uri host {host!r} does not resolve: {exc}") from None
        ip = ipaddress.ip_address(infos[0][4][0])
    if ip.version != 4:
        raise ValueError(
            f"zeroconf announces an IPv4 address: bind the Wyoming server to one (or 0.0.0.0), not {host!r}"
        )
    return Announcement(name, str(ip), port, (str(ip),))


class WyomingAnnouncer:
    """Announce one Wyoming server until :meth:`stop` (which says goodbye, so browsers drop it)."""

    def __init__(self, announcement: Announcement) -> None:
        self.announcement = announcement
        self.registered_name: str | None = None
        """The name registered (another server already using ``name`` makes it ``name-2``)."""
        self._zc: AsyncZeroconf | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start announcing in the background (mDNS probes for the name first, about a second)."""
        self._task = asyncio.create_task(self._register(), name="wyoming-zeroconf")

    async def _register(self) -> None:
        from zeroconf import InterfaceChoice, IPVersion
        from zeroconf.asyncio import AsyncZeroconf

        a = self.announcement
        try:
            interfaces = list(a.interfaces) if a.interfaces is not None else InterfaceChoice.All
            self._zc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
            info = a.service_info()
            # Probes the name first (a second or so), then announces it in the background.
            announcing = await self._zc.async_register_service(info, allow_name_change=True)
            self.registered_name = info.name
            _log.info("Wyoming server announced by zeroconf as %r (%s:%d)", info.name, a.address, a.port)
            await announcing
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.error("Wyoming zeroconf announcement failed (add it by host and port): %s", exc)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        zc, self._zc = self._zc, None
        if zc is not None:
            with contextlib.suppress(Exception):  # goodbye packets: browsers drop it at once
                await zc.async_unregister_all_services()
            await zc.async_close()
