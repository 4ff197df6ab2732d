"""Per-app, per-command call-rate limit (Tencent: 200 calls/s by default → 60007).

A token bucket per (sdkappid, command) holding at most one second's worth of calls. It lives
in the server process: with several processes behind a balancer each enforces the limit on
its own share (documented in docs/configuration.md).
"""

from __future__ import annotations


class RateLimiter:
    def __init__(self) -> None:
        # key -> [tokens, last refill time]; lists are cheaper to mutate than objects here.
        self._buckets: dict[tuple[int, str], list[float]] = {}

    def allow(self, sdkappid: int, command: str, rate: int, now: float) -> bool:
        if rate <= 0:
            return True
        key = (sdkappid, command)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [rate - 1.0, now]
            return True
        tokens = min(float(rate), bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True
