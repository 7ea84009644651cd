"""The one retry loop and backoff formula of the collection (_retry)."""

from __future__ import annotations

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _retry


class Transient(Exception):
    pass


class Fatal(Exception):
    pass


def flaky(failures, exc=Transient):
    calls = []

    def fn(attempt):
        calls.append(attempt)
        if len(calls) <= failures:
            raise exc("attempt %d" % attempt)
        return "ok after %d" % attempt
    return fn, calls


def test_backoff_doubles_from_base_and_is_capped():
    assert [_retry.backoff_delay(n) for n in range(1, 7)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert [_retry.backoff_delay(n, base=0.5, cap=1.5) for n in (1, 2, 3)] == [0.5, 1.0, 1.5]
    assert _retry.backoff_delay(0) == _retry.backoff_delay(1)


def test_retries_transient_errors_with_the_backoff():
    fn, calls = flaky(2)
    waits = []
    out = _retry.retry(fn, 3, lambda err: isinstance(err, Transient), sleep=waits.append)
    assert out == "ok after 2" and calls == [0, 1, 2]
    assert waits == [0.2, 0.4]


def test_gives_up_after_retries_with_the_last_error():
    fn, calls = flaky(10)
    waits = []
    with pytest.raises(Transient, match="attempt 2"):
        _retry.retry(fn, 2, lambda err: True, sleep=waits.append)
    assert calls == [0, 1, 2] and len(waits) == 2


def test_an_error_not_worth_retrying_is_raised_at_once():
    fn, calls = flaky(1, exc=Fatal)
    with pytest.raises(Fatal):
        _retry.retry(fn, 5, lambda err: isinstance(err, Transient), sleep=lambda s: None)
    assert calls == [0]


def test_zero_retries_calls_once_and_before_retry_sees_each_retry():
    fn, calls = flaky(1)
    with pytest.raises(Transient):
        _retry.retry(fn, 0, lambda err: True, sleep=lambda s: None)
    assert calls == [0]
    fn, calls = flaky(2)
    seen = []
    _retry.retry(fn, 5, lambda err: True, before_retry=lambda err, n: seen.append((str(err), n)), sleep=lambda s: None)
    assert seen == [("attempt 0", 1), ("attempt 1", 2)]
