# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Retries of transient failures (libvirt, ONTAP): one loop and one backoff formula for the collection.

This module util is PRIVATE to the collection. It may change without notice.

``backoff_delay(attempt, base, cap)`` is the wait before retry number ATTEMPT (1, 2, ...): BASE, doubled for each
further attempt, never more than CAP. ``retry(fn, retries, should_retry, ...)`` calls ``fn(attempt)`` until it
returns, an error is not worth retrying, or RETRIES retries were made (then the last error is raised unchanged).
Polling a job until a deadline is not a retry and stays with its caller.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

BACKOFF_BASE = 0.2  # seconds before the first retry
BACKOFF_CAP = 2.0  # never wait longer than this between two attempts


def backoff_delay(attempt: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait before retry number ATTEMPT (1 for the first retry): exponential, capped."""
    return min(base * (2 ** (max(1, attempt) - 1)), cap)


def retry(fn: Callable[[int], T], retries: int, should_retry: Callable[[Exception], bool],
          base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP,
          before_retry: Optional[Callable[[Exception, int], None]] = None,
          sleep: Callable[[float], None] = time.sleep) -> T:
    """Return fn(attempt) (attempt 0 first); retry an error for which should_retry(err) holds, at most RETRIES times.

    BEFORE_RETRY(err, attempt) runs before each wait (e.g. drop a dead connection); the wait is
    ``backoff_delay(attempt, base, cap)``. Errors that are not retried, and the last one, are raised unchanged.
    """
    attempt = 0
    limit = max(0, int(retries))
    while True:
        try:
            return fn(attempt)
        except Exception as err:
            if attempt >= limit or not should_retry(err):
                raise
            attempt += 1
            if before_retry is not None:
                before_retry(err, attempt)
            sleep(backoff_delay(attempt, base, cap))
