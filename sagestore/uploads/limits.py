"""What one instance lets request bodies hold: a byte budget for every buffered part, reserved as
the bytes arrive and waited for at most a bounded time, and a cap on one user's uploads in flight.

Both exist so that a hostile or stalled client can neither take the server's memory nor keep
other users waiting: a request holds only budget for bytes it has actually received, a request
that cannot get budget in time is answered 503 with Retry-After, and one user's requests beyond
the cap are answered 429 at once instead of queueing behind the budget.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import AsyncIterator

from ..errors import ServerBusy, TooManyRequests

RETRY_AFTER_SECONDS = "2"


class Reservation:
    """One request's share of a ByteBudget; grows with the bytes the request buffers."""

    def __init__(self, budget: "ByteBudget") -> None:
        self.budget = budget
        self.held = 0

    async def grow(self, size: int) -> None:
        """Reserve `size` more bytes, waiting at most the budget's wait; ServerBusy (503) after that.
        A request that needs more than the whole budget is given all of it (it waits until the
        budget is otherwise empty), so it can still finish."""
        size = max(0, min(size, self.budget.total - self.held))
        if size:
            await self.budget._take(size)
            self.held += size

    async def grow_to(self, size: int) -> None:
        if size > self.held:
            await self.grow(size - self.held)

    def release(self, size: int) -> None:
        size = max(0, min(size, self.held))
        if size:
            self.held -= size
            self.budget.give_back(size)


class ByteBudget:
    """Caps the bytes all part buffers of this instance hold at once."""

    def __init__(self, total: int, wait: float) -> None:
        self.total = total
        self.wait = wait
        self.used = 0
        self._waiters: deque[asyncio.Future] = deque()

    async def _take(self, size: int) -> None:
        if self.used + size <= self.total and not self._waiters:
            self.used += size
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while self.used + size > self.total:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ServerBusy("the server is receiving as much as it can buffer; retry shortly",
                                 headers={"Retry-After": RETRY_AFTER_SECONDS})
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        self.used += size

    def try_take(self, size: int, *, leave_free: int = 0) -> bool:
        """Take `size` bytes if they are free now, leaving `leave_free` bytes and any waiter
        alone; never waits."""
        if self.used + size + leave_free <= self.total and not self._waiters:
            self.used += size
            return True
        return False

    def give_back(self, size: int) -> None:
        self.used -= size
        while self._waiters:  # every waiter checks again whether its size fits now
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    @contextlib.asynccontextmanager
    async def reserve(self, size: int = 0) -> AsyncIterator[Reservation]:
        """A reservation of `size` bytes to start with, all of it given back at the end."""
        reservation = Reservation(self)
        try:
            await reservation.grow(size)
            yield reservation
        finally:
            reservation.release(reservation.held)


class UserSlots:
    """At most `per_user` body-carrying upload requests of one user at a time. A request beyond that
    waits up to `wait` seconds for one of them to end (parallel clients just queue), then gets 429."""

    def __init__(self, per_user: int, wait: float) -> None:
        self.per_user = per_user
        self.wait = wait
        self._in_flight: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, user: str | None) -> AsyncIterator[None]:
        user = user or ""
        if self._in_flight.get(user, 0) >= self.per_user:
            await self._wait_for_slot(user)
        self._in_flight[user] = self._in_flight.get(user, 0) + 1
        try:
            yield
        finally:
            left = self._in_flight[user] - 1
            if left:
                self._in_flight[user] = left
            else:
                del self._in_flight[user]
            waiters = self._waiters.get(user)
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    break

    async def _wait_for_slot(self, user: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while self._in_flight.get(user, 0) >= self.per_user:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TooManyRequests(f"at most {self.per_user} uploads of one user may be in flight at once; "
                                      "retry when one has finished", headers={"Retry-After": RETRY_AFTER_SECONDS})
            waiter = loop.create_future()
            waiters = self._waiters.setdefault(user, deque())
            waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    waiters.remove(waiter)
                if not waiters and self._waiters.get(user) is waiters:
                    del self._waiters[user]
