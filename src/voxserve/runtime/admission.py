"""A counter of live sessions with a hard cap: the adapter refuses (WebSocket 1013) when it is full."""

from __future__ import annotations

__all__ = ["Admission"]


class Admission:
    """Live sessions of one kind (streaming STT, speak, chat) against ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        """Take a place; ``False`` (and nothing taken) when ``limit`` are already live."""
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        """Give back a place taken by :meth:`try_enter`."""
        self.active -= 1
