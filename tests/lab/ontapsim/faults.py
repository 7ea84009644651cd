"""Fault rules, latency and the call log: the knobs behind the /_sim/ admin endpoint."""

from __future__ import annotations

import fnmatch
import itertools
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

ACTIONS = ("error", "hang", "drop", "job_running", "job_failure")
MAX_CALLS = 5000


@dataclass
class Fault:
    action: str
    method: str | None = None        # REST method (None: any); ZAPI calls are POST
    path: str | None = None          # glob on the URL path without query
    api: str | None = None           # ZAPI API name (glob)
    count: int | None = 1            # matching calls left; None = until cleared
    status: int = 500                # REST error status
    code: str = "65552"              # REST error code / job code
    message: str = "Simulated failure"
    errno: str = "13001"             # ZAPI
    reason: str | None = None        # ZAPI (defaults to message)
    seconds: float | None = None     # hang time, or how long a job stays running (None: forever)
    job_state: str = "running"       # job_running: the state reported meanwhile (running | queued)
    execute: bool = False            # drop: run the call first, then lose the answer
    skip: int = 0                    # let this many matching calls through before the rule applies
    id: int = 0
    hits: int = 0

    def matches(self, method: str, path: str, api: str | None) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        if self.api is not None:
            return api is not None and fnmatch.fnmatchcase(api, self.api)
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or fnmatch.fnmatchcase(path, self.path)


@dataclass
class CallRecord:
    seq: int
    method: str
    path: str
    query: str
    user: str | None
    api: str | None = None
    vfiler: str | None = None
    svm_header: str | None = None
    body: Any = None                 # REST: the JSON body; ZAPI: the request XML (first 8 KiB)
    status: int | None = None
    zapi_status: str | None = None
    errno: str | None = None
    code: str | None = None
    fault: str | None = None
    start: float = field(default_factory=time.time)
    end: float | None = None


class Knobs:
    """Thread-safe fault list, latency table and call log."""

    def __init__(self, latency: dict[str, float], scale: float) -> None:
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.latency = dict(latency)
        self.scale = scale
        self.calls: list[CallRecord] = []
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)

    # -- faults --------------------------------------------------------------------------
    def add_fault(self, spec: dict[str, Any]) -> Fault:
        known = set(Fault.__dataclass_fields__) - {"id", "hits"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; known: {sorted(known)}")
        if spec.get("action") not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}")
        if spec.get("job_state", "running") not in ("running", "queued"):
            raise ValueError("job_state must be running or queued")
        if spec.get("path") is None and spec.get("api") is None and spec.get("method") is None:
            raise ValueError("a fault needs at least one of method, path, api")
        fault = Fault(**spec)
        fault.code = str(fault.code)
        fault.errno = str(fault.errno)
        with self.lock:
            fault.id = next(self._ids)
            self.faults.append(fault)
        return fault

    def take(self, method: str, path: str, api: str | None, actions: tuple[str, ...]) -> Fault | None:
        """Consume one use of the first rule with one of ACTIONS matching this call."""
        with self.lock:
            for fault in self.faults:
                if fault.action in actions and fault.matches(method, path, api):
                    if fault.skip > 0:  # e.g. fail only the second of two snapshot-delete calls
                        fault.skip -= 1
                        continue
                    fault.hits += 1
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None

    def list_faults(self) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(f) for f in self.faults]

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    # -- latency ---------------------------------------------------------------------------
    def seconds(self, kind: str) -> float:
        """The configured latency of KIND, scaled (0 when latency is off)."""
        with self.lock:
            return self.latency.get(kind, self.latency.get("default", 0.0)) * self.scale

    def delay(self, kind: str) -> None:
        secs = self.seconds(kind)
        if secs > 0:
            time.sleep(secs)

    def set_latency(self, spec: dict[str, Any]) -> None:
        with self.lock:
            if "scale" in spec:
                self.scale = float(spec["scale"])
            for k, v in (spec.get("kinds") or {}).items():
                self.latency[k] = float(v)

    # -- call log --------------------------------------------------------------------------
    def log_call(self, rec: CallRecord) -> CallRecord:
        with self.lock:
            rec.seq = next(self._seq)
            self.calls.append(rec)
            del self.calls[:-MAX_CALLS]
        return rec

    def list_calls(self, since: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(c) for c in self.calls if c.seq > since]

    def clear_calls(self) -> None:
        with self.lock:
            self.calls.clear()
