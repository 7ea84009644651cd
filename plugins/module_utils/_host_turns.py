# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Turns of the overlay fence's runs on one KVM host, across processes (several runs at once, or inventory hosts
that are the same machine): file locks in the host's state directory.

This module util is PRIVATE to the collection. It may change without notice.

* ``host_switch_lock``: one VM's quiesce -> overlay -> release at a time on the host. libvirtd does the switches one
  after the other anyway; side by side each pause would include the others'.
* ``settle``: wait until a process is asleep. Before its first switch a run waits for its own watchdog's start-up,
  and a switch that takes the turn from another process waits for that process's tail (its exit after the switch).
* ``Preparing``: a run holds a shared lock while it prepares (discovery, plan, watchdog start, overlay files); a
  switch waits until no run on the host prepares. Measured on the 2-core lab (3 inventory hosts on one machine, one
  minimal VM each): a switch beside another run's preparation paused its VM 28-63 ms, a switch alone 17-19 ms.

Every wait is before a quiesce (wall time, never pause) and bounded: after it the run goes ahead without the lock.
A lock goes with its process (an exit or a crash releases it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import Callable, Iterator, Optional, Tuple

SWITCH_LOCK = "overlay-switch.lock"
PREPARE_LOCK = "overlay-prepare.lock"
SWITCH_LOCK_WAIT = 30.0  # seconds a switch waits for another run's switch on this host before it goes ahead
PREPARE_WAIT = 3.0  # seconds a switch waits for other runs' preparation, and a preparation for a switch
_POLL = 0.005  # a wait's granularity (the waiters sleep: no CPU taken from the switch)

# The run's watchdog (a new Python process) starts just before the overlays: its start-up takes the CPU libvirtd needs
# for the first VMs' overlays. On the 2-core lab the first VM's pause was 50-72 ms against ~20 ms for the next ones;
# after waiting for the watchdog to sleep, 18-30 ms for all. The wait is bounded: WATCHDOG_SETTLE seconds at most.
WATCHDOG_SETTLE = 0.5
# A switch that takes the turn from another process, which took it less than FOLLOW_RECENT seconds before, waits
# (PREVIOUS_SETTLE seconds at most) until that process is asleep or gone and nothing else is runnable: right after its
# switch it writes its journal, returns its result and exits, and Ansible takes it in, all beside the next switch.
# 3 inventory hosts on the 2-core lab: the second and third switch paused their VMs 26-60 ms before, 22-26 ms after
# (one host with the same 3 VMs: 17-25 ms).
PREVIOUS_SETTLE = 0.3
FOLLOW_RECENT = 2.0
_SETTLE_QUIET = 3  # polls in a row that find the process asleep


def _wait_quiet(is_quiet: Callable[[], Optional[bool]], limit: float) -> float:
    """Poll IS_QUIET every _POLL seconds until it says True on _SETTLE_QUIET polls in a row, None (nothing left to
    wait for), or LIMIT seconds passed; returns the seconds waited."""
    t0 = time.monotonic()
    quiet = 0
    while time.monotonic() - t0 < limit:
        answer = is_quiet()
        if answer is None:
            break
        quiet = quiet + 1 if answer else 0
        if quiet >= _SETTLE_QUIET:
            break
        time.sleep(_POLL)
    return time.monotonic() - t0


def settle(pid: Optional[int], limit: float = WATCHDOG_SETTLE) -> float:
    """Wait until process PID is asleep (state S in /proc/PID/stat on _SETTLE_QUIET polls in a row), it ended, or
    LIMIT seconds passed; returns the seconds waited. No /proc (not Linux) or no PID: no wait."""
    if not pid:
        return 0.0

    def asleep() -> Optional[bool]:
        try:
            with open("/proc/%d/stat" % int(pid)) as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError, ValueError):
            return None
        return None if state in ("Z", "X") else state == "S"
    return _wait_quiet(asleep, limit)


def _take(state_dir: str, name: str, how: int, wait: float) -> Tuple[Optional[int], bool]:
    """Open lock file NAME of STATE_DIR and flock it HOW, retrying for up to WAIT seconds. Returns (fd or None,
    whether the lock is held); the caller closes the fd (which releases the lock)."""
    try:
        fd = os.open(os.path.join(state_dir, name), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None, False  # no lock file (read-only state dir was refused earlier): go ahead without
    give_up = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, how | fcntl.LOCK_NB)
            return fd, True
        except BlockingIOError:
            if time.monotonic() >= give_up:
                return fd, False
            time.sleep(_POLL)
        except OSError:
            return fd, False


def _close(fd: Optional[int]) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


@contextlib.contextmanager
def host_switch_lock(state_dir: str, wait: float = SWITCH_LOCK_WAIT,
                     prepare_wait: float = PREPARE_WAIT) -> Iterator[bool]:
    """Hold this host's switch turn: no other switch, and no run preparing (waited for up to PREPARE_WAIT seconds;
    preparations that start meanwhile wait for the end of this turn). After WAIT seconds (another run's agent is
    slow) the switch goes ahead without the turn. Yields whether it holds the switch lock."""
    switch_fd, held = _take(state_dir, SWITCH_LOCK, fcntl.LOCK_EX, wait)
    quiet_fd = None
    try:
        quiet_fd, _quiet = _take(state_dir, PREPARE_LOCK, fcntl.LOCK_EX, prepare_wait)
        if held and switch_fd is not None:
            _follow(switch_fd)
        yield held
    finally:
        _close(quiet_fd)
        _close(switch_fd)


def _runnable() -> int:
    """Tasks runnable on this host right now, this one included (/proc/loadavg's fourth field); 0 when unknown."""
    try:
        with open("/proc/loadavg") as fh:
            return int(fh.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return 0


def quiet_cpu(limit: float) -> float:
    """Wait until nothing but this task is runnable on _SETTLE_QUIET polls in a row, or LIMIT seconds; returns the
    seconds waited."""
    return _wait_quiet(lambda: _runnable() <= 1, limit)


def _follow(fd: int) -> None:
    """The lock file names the process that took the turn last and when. A process that took it moments ago (not
    this one) is still finishing its switch's run: wait, at most PREVIOUS_SETTLE seconds, for it to sleep or exit and
    for the CPU to go quiet. Then name this process."""
    try:
        last = os.pread(fd, 64, 0).decode("ascii", "replace").split()
        if len(last) == 2 and last[0].isdigit() and int(last[0]) != os.getpid() \
                and 0 <= time.time() - float(last[1]) < FOLLOW_RECENT:
            t0 = time.monotonic()
            settle(int(last[0]), PREVIOUS_SETTLE)
            quiet_cpu(PREVIOUS_SETTLE - (time.monotonic() - t0))
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"%d %.3f\n" % (os.getpid(), time.time()), 0)
    except (OSError, ValueError):
        pass  # the turn is held all the same


class Preparing:
    """A run's preparation on this host (shared with other preparations; ``begin`` waits, bounded, for a switch in
    progress). ``end`` is idempotent; a run that never ends it releases it at its exit."""

    def __init__(self) -> None:
        self._fd: Optional[int] = None

    def begin(self, state_dir: str, wait: float = PREPARE_WAIT) -> bool:
        if self._fd is not None:
            return True
        fd, held = _take(state_dir, PREPARE_LOCK, fcntl.LOCK_SH, wait)
        if not held:
            _close(fd)
            return False
        self._fd = fd
        return True

    def end(self) -> None:
        fd, self._fd = self._fd, None
        _close(fd)

    @property
    def active(self) -> bool:
        return self._fd is not None
