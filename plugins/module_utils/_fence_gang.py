# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fence's thread group: one worker per VM, prepared ahead and fired at once.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import SharedConnection


class Gang:
    """One thread per item, started and prepared (domain looked up) ahead, fired at once by ``fire()``.

    Creating the threads and looking the domains up happens before the fire, so neither lands inside a
    pause window; the release gang of vm_backup is built while the snapshot runs.
    """

    def __init__(self, items: List[Any], fn: Callable[[Any], Dict[str, Any]], sc: Optional[SharedConnection] = None,
                 prepare: Optional[Callable[[Any], None]] = None) -> None:
        self.items = items
        self.fn = fn
        self.sc = sc
        self.prepare = prepare
        self.results: List[Optional[Dict[str, Any]]] = [None] * len(items)
        self.go = [threading.Event() for _item in items]
        self.ready = threading.Semaphore(0)
        self.threads = []
        for idx, item in enumerate(items):
            thread = threading.Thread(target=self._run, args=(idx, item), name="kvmsnap-fence-%d" % idx, daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, idx: int, item: Any) -> None:
        if self.sc is not None:
            self.sc.bind(idx)
        try:
            if self.prepare is not None:
                self.prepare(item)
        except Exception:
            pass  # the real call reports the error
        self.ready.release()
        self.go[idx].wait()
        try:
            self.results[idx] = self.fn(item)
        except BaseException as err:  # the worker must always report
            self.results[idx] = {"error": str(err), "t_done": time.monotonic()}

    def fire(self, ready_timeout: float = 30.0, order: Optional[List[int]] = None) -> None:
        """Let every worker go (in ORDER, a list of item indexes, if given: their calls queue in that order)."""
        end = time.monotonic() + ready_timeout
        for _item in self.items:
            if not self.ready.acquire(timeout=max(0.0, end - time.monotonic())):
                break
        for idx in order if order is not None else range(len(self.items)):
            self.go[idx].set()

    def wait(self, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        end = None if timeout is None else time.monotonic() + timeout
        out = []
        for idx, thread in enumerate(self.threads):
            thread.join(None if end is None else max(0.0, end - time.monotonic()))
            res = self.results[idx]
            if res is None:
                res = {"error": "no answer within %.0fs (libvirt/agent call hangs)" % (timeout or 0), "hung": True,
                       "t_done": time.monotonic()}
            out.append(res)
        return out


def parallel(items: List[Any], fn: Callable[[Any], Dict[str, Any]], timeout: Optional[float] = None,
             sc: Optional[SharedConnection] = None, prepare: Optional[Callable[[Any], None]] = None
             ) -> List[Dict[str, Any]]:
    """Run fn on every item at once, results in item order."""
    if not items:
        return []
    gang = Gang(items, fn, sc, prepare)
    gang.fire()
    return gang.wait(timeout)
