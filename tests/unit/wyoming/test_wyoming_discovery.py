"""Zeroconf announcement of the Wyoming server (``_wyoming._tcp.local.``): where it is announced, what
is registered, and a real announcement browsed on the loopback interface only (nothing leaves the
machine: both ends run mDNS on 127.0.0.1 alone)."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import pytest
from tests.timing import scaled
from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from voxserve.cli import build_parser
from voxserve.config import Settings
from voxserve.wyoming import discovery
from voxserve.wyoming.discovery import SERVICE_TYPE, Announcement, WyomingAnnouncer, plan_announcement


def test_where_it_is_announced(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = plan_announcement("127.0.0.1", 10300, "vox")
    assert loop == Announcement("vox", "127.0.0.1", 10300, ("127.0.0.1",))
    assert plan_announcement("localhost", 10300, "vox").interfaces == ("127.0.0.1",)
    assert plan_announcement("192.0.2.10", 10300, "vox").address == "192.0.2.10"
    monkeypatch.setattr(discovery, "default_route_address", lambda: "192.0.2.7")
    for wildcard in ("0.0.0.0", "::"):
        assert plan_announcement(wildcard, 10300, "vox") == Announcement("vox", "192.0.2.7", 10300, None)
    for bad in ("::1", "[::1]", "fd00::2"):
        with pytest.raises(ValueError, match="IPv4"):
            plan_announcement(bad, 10300, "vox")


def test_the_service_registered() -> None:
    info = Announcement("kitchen", "127.0.0.1", 10301, ("127.0.0.1",)).service_info()
    assert info.type == SERVICE_TYPE == "_wyoming._tcp.local."
    assert info.name == "kitchen._wyoming._tcp.local."
    assert info.port == 10301 and info.parsed_addresses() == ["127.0.0.1"]
    assert not info.properties  # as the reference servers: Home Assistant asks describe for the rest


def test_off_by_default_and_only_with_a_wyoming_server() -> None:
    assert Settings().wyoming_zeroconf is False
    with pytest.raises(ValueError, match="set wyoming_uri"):
        Settings(wyoming_zeroconf=True)
    on = Settings(wyoming_uri="tcp://127.0.0.1:10300", wyoming_zeroconf=True)
    assert on.wyoming_zeroconf_name == "voxserve"
    with pytest.raises(ValueError, match="pattern"):
        Settings(wyoming_uri="tcp://127.0.0.1:10300", wyoming_zeroconf=True, wyoming_zeroconf_name="a.b")


def test_the_cli_flag() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).zeroconf is None  # off
    assert parser.parse_args(["serve", "--zeroconf"]).zeroconf == ""  # on, the default name
    assert parser.parse_args(["serve", "--zeroconf", "kitchen"]).zeroconf == "kitchen"


def loopback_multicast() -> bool:
    """Whether a multicast datagram sent on the loopback interface comes back (it never leaves lo)."""
    group, port = "239.255.77.77", 0
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        try:
            rx.bind(("0.0.0.0", port))
            port = rx.getsockname()[1]
            membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("127.0.0.1"))
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            rx.settimeout(scaled(2))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
            tx.sendto(b"voxserve", (group, port))
            return rx.recv(64) == b"voxserve"
        except OSError:
            return False


async def test_announced_on_loopback_and_withdrawn_at_stop(unused_tcp_port: int) -> None:
    if not loopback_multicast():
        pytest.skip("this machine does not loop multicast back on 127.0.0.1")
    name = f"voxserve-test-{unused_tcp_port}"
    announcer = WyomingAnnouncer(plan_announcement("127.0.0.1", unused_tcp_port, name))
    browser_zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    loop = asyncio.get_running_loop()
    added: asyncio.Future[str] = loop.create_future()
    removed: asyncio.Future[str] = loop.create_future()

    def on_change(zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if not name.startswith(f"voxserve-test-{unused_tcp_port}"):
            return  # another test run's
        wanted = added if state_change is ServiceStateChange.Added else removed
        if state_change is not ServiceStateChange.Updated and not wanted.done():
            loop.call_soon_threadsafe(lambda: wanted.done() or wanted.set_result(name))

    browser = AsyncServiceBrowser(browser_zc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    try:
        announcer.start()
        async with asyncio.timeout(scaled(20)):
            found = await added
        assert found == f"{name}.{SERVICE_TYPE}"
        info = AsyncServiceInfo(SERVICE_TYPE, found)
        assert await info.async_request(browser_zc.zeroconf, int(scaled(5) * 1000))
        assert info.port == unused_tcp_port and info.parsed_addresses() == ["127.0.0.1"]
        assert announcer.registered_name == found
        await announcer.stop()  # says goodbye: browsers drop it at once, not at the record's expiry
        async with asyncio.timeout(scaled(20)):
            assert await removed == found
    finally:
        await announcer.stop()
        await browser.async_cancel()
        await browser_zc.async_close()
