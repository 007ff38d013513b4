"""One object per event loop, made on first use there: an aiohttp session (and what goes with
it) belongs to the loop that made it and cannot be used from another. A process runs one loop;
tests and the console may run several in turn, and a loop that has ended drops its object."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._made: dict[asyncio.AbstractEventLoop, T] = {}

    def get(self) -> T:
        """The running loop's object, made now if it has none."""
        loop = asyncio.get_running_loop()
        made = self._made.get(loop)
        if made is None:
            for ended in [old for old in self._made if old.is_closed()]:
                del self._made[ended]  # its loop is gone, and its sockets with it
            made = self._made[loop] = self._make()
        return made

    def pop(self) -> T | None:
        """The running loop's object, forgotten (for its owner to close), or None."""
        return self._made.pop(asyncio.get_running_loop(), None)
