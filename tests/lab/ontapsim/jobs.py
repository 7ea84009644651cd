"""Asynchronous jobs as ONTAP runs them: a call that starts a job is answered at once (202); the job stays
`running` for the configured latency of its kind, then does its work and ends. `return_timeout` waits for the
job's end and is woken by it (no polling), so a client that asks for it gets the answer within milliseconds of
the job's end. A fault can keep a job running (or queued) or make it fail at once."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from .errors import SimError
from .faults import Fault
from .state import MAX_JOBS, State, new_uuid

TERMINAL = ("success", "failure")


class Jobs:
    def __init__(self, state: State) -> None:
        self.state = state
        # job uuid -> set when the job reaches a terminal state (process memory only: waiters of this process)
        self._ended: dict[str, threading.Event] = {}
        # Jobs left running by a previous process can never finish now.
        with state.lock:
            for job in state.doc["jobs"].values():
                if job["state"] not in TERMINAL:
                    self._finish(job, SimError("internal", "Job was interrupted by a restart of the cluster."))

    def run(self, description: str, svm: dict[str, Any] | None, work: Callable[[], Any],
            fault: Fault | None = None, latency: float = 0.0) -> dict[str, Any]:
        """Create a job for WORK and return it. WORK runs under the state lock once LATENCY seconds have
        passed (at once when 0: the job is terminal before the answer is sent)."""
        with self.state.lock:
            now = time.time()
            job: dict[str, Any] = {"uuid": new_uuid(), "description": description, "state": "running",
                                   "message": "", "code": 0, "start_time": now, "end_time": None}
            if svm:
                job["svm"] = {"name": svm["name"], "uuid": svm["uuid"]}
            jobs = self.state.doc["jobs"]
            jobs[job["uuid"]] = job
            self._ended[job["uuid"]] = threading.Event()
            for old in list(jobs)[:-MAX_JOBS]:
                del jobs[old]
                self._ended.pop(old, None)
            delay: float | None = latency if latency > 0 else None
            if fault is not None and fault.action == "job_failure":
                job["code"] = int(fault.code)
                self._finish(job, SimError("internal", fault.message), code=fault.code)
                delay = None
            elif fault is not None and fault.action == "job_running":
                job["state"] = fault.job_state
                job["message"] = fault.job_state
                delay = fault.seconds  # None: the job never ends on its own
            elif delay is None:
                self._complete(job, work)
            if delay is not None and job["state"] not in TERMINAL:
                timer = threading.Timer(delay, self._complete, (job, work))
                timer.daemon = True
                timer.start()
            self.state.save()
            return job

    def _complete(self, job: dict[str, Any], work: Callable[[], Any]) -> None:
        with self.state.lock:
            if job["state"] not in TERMINAL:
                job["state"] = job["message"] = "running"
            try:
                work()
            except SimError as exc:
                self._finish(job, exc)
            except Exception as exc:  # a job must end, even on a simulator bug
                self._finish(job, SimError("internal", f"Internal error: {exc}"))
            else:
                self._finish(job, None)
            self.state.save()

    def _finish(self, job: dict[str, Any], exc: SimError | None, code: str | None = None) -> None:
        job["end_time"] = time.time()
        if exc is None:
            job.update(state="success", message="success", code=0)
        else:
            code = code or exc.rest_code
            job.update(state="failure", message=exc.message, code=int(code),
                       error={"code": str(code), "message": exc.message}, _kind=exc.kind)
        ended = self._ended.get(job["uuid"])
        if ended is not None:
            ended.set()

    def get(self, uuid: str) -> dict[str, Any]:
        with self.state.lock:
            job = self.state.doc["jobs"].get(uuid)
            if job is None:
                raise SimError("not_found", "entry doesn't exist", target="uuid")
            return dict(job)

    def wait(self, job: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The job once it ended, or after TIMEOUT seconds (return_timeout semantics); woken by the job's end."""
        with self.state.lock:
            ended = self._ended.get(job["uuid"])
        if ended is not None:
            ended.wait(timeout)
        return self.get(job["uuid"])
