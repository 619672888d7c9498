"""Pacing calls to the API: a token bucket, read timeouts learned from the answers, rate-limit hints."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping


class TokenBucket:
    """Thread-safe token bucket: at most `rate` calls per second on average, bursts up to `capacity`."""

    def __init__(self, rate: float, capacity: float | None = None, *, clock=time.monotonic, sleep=time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until one token is available, then take it."""
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            self._sleep(wait)


class ObservedLatency:
    """Read timeouts derived from the answers seen so far, per endpoint.

    Once `min_samples` answers of an endpoint arrived, a call stops waiting after `multiplier` × their 95th
    percentile (never below `floor_seconds`, never above the configured timeout), so one stalled connection
    costs seconds when the API answers everything else in well under a second, and the retry ladder takes over.
    """

    def __init__(self, multiplier: float = 10.0, floor_seconds: float = 2.0, min_samples: int = 20,
                 window: int = 200):
        self.multiplier = multiplier
        self.floor_seconds = floor_seconds
        self.min_samples = min_samples
        self.window = window
        self._seconds: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def record(self, endpoint: str, seconds: float) -> None:
        """Note how long an answer of `endpoint` took."""
        with self._lock:
            recent = self._seconds.setdefault(endpoint, [])
            recent.append(seconds)
            del recent[:-self.window]

    def read_timeout(self, endpoint: str, ceiling: float) -> float:
        """The read timeout for the next call of `endpoint` (`ceiling` until enough answers were seen)."""
        with self._lock:
            recent = sorted(self._seconds.get(endpoint, ()))
        if len(recent) < self.min_samples:
            return ceiling
        p95 = recent[min(len(recent) - 1, math.ceil(0.95 * len(recent)) - 1)]
        return min(ceiling, max(self.floor_seconds, self.multiplier * p95))


def rate_limit_hint_seconds(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from the hints urllib3's Retry does not read: a fractional Retry-After, X-RateLimit-Reset.

    X-RateLimit-Reset comes as epoch seconds, epoch milliseconds or seconds from now; `now` is epoch seconds.
    """
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            value = float(reset)
        except ValueError:
            return None
        if value > 1e11:  # epoch milliseconds
            value /= 1000.0
        return max(0.0, value - now) if value > 1e9 else max(0.0, value)
    return None
