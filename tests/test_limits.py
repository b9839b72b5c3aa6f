"""Token buckets: the rate and burst they promise, and memory only for keys in use."""

from __future__ import annotations

import pytest

from autoreply.web.errors import RateLimited
from autoreply.web.limits import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate_then_retry_after() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("u") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("u") == pytest.approx(0.5)  # empty: one token in 1 / rate seconds
    clock.now += 0.5
    assert buckets.take("u") == 0.0
    with pytest.raises(RateLimited, match="user u") as caught:
        buckets.check("u", what="user u")
    assert caught.value.retry_after == 1  # Retry-After is in whole seconds
    assert buckets.take("other") == 0.0  # keys do not share a bucket


def test_refilled_buckets_are_dropped_so_new_users_do_not_grow_memory() -> None:
    """A new user every 10 ms for 100 s, one request each: a bucket one token short is
    full again 1 / rate = 0.5 s later, so about 50 buckets are kept, not 10,000."""
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=20, clock=clock)
    for i in range(10_000):
        buckets.take(f"user-{i}")
        clock.now += 0.01
    assert 40 <= len(buckets) <= 60
    # A user seen again within the window still has the tokens it spent.
    for _ in range(20):
        buckets.take("busy")
    assert buckets.take("busy") > 0


def test_max_keys_bounds_memory_when_every_key_is_busy() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=0.001, burst=5, max_keys=100, clock=clock)
    for i in range(1_000):
        buckets.take(f"k{i}")
    assert len(buckets) == 100
