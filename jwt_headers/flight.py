"""Single flight: concurrent cache misses for the same key share one resolution (R30).

Twenty threads that bring the same new token at once cause one signature check and one
userinfo call; the others wait for the first and take its result, or its refusal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any


class _Flight:
    """One resolution under way. ``done`` is a plain lock the leader holds until the result is
    in: waiting is acquiring it. (A ``threading.Event`` costs a condition and two locks to
    build, a measurable share of every new token; a lock is one small C object.)"""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.result: Any = None
        self.error: BaseException | None = None


class SingleFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}

    def run(self, key: Hashable, work: Callable[[], Any]) -> Any:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            with flight.done:  # released by the leader once the result or error is in
                pass
            if flight.error is not None:
                raise flight.error
            return flight.result
        try:
            flight.result = work()
        except BaseException as error:
            flight.error = error
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.release()
        return flight.result
