"""Asynchronous jobs as ONTAP reports them. Work runs at once so a job is terminal by the
first poll (clients poll >= 5 s apart); a fault can keep it running or make it fail."""

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
        # Jobs left running by a previous process can never finish now.
        with state.lock:
            for job in state.doc["jobs"].values():
                if job["state"] not in TERMINAL:
                    self._finish(job, SimError("internal", "Job was interrupted by a restart of the cluster."))

    def run(self, description: str, svm: dict[str, Any] | None, work: Callable[[], Any],
            fault: Fault | None = None) -> dict[str, Any]:
        """Create a job for WORK (called under the state lock) and return it."""
        with self.state.lock:
            now = time.time()
            job: dict[str, Any] = {"uuid": new_uuid(), "description": description, "state": "running",
                                   "message": "", "code": 0, "start_time": now, "end_time": None}
            if svm:
                job["svm"] = {"name": svm["name"], "uuid": svm["uuid"]}
            jobs = self.state.doc["jobs"]
            jobs[job["uuid"]] = job
            for old in list(jobs)[:-MAX_JOBS]:
                del jobs[old]
            if fault is not None and fault.action == "job_failure":
                job["code"] = int(fault.code)
                self._finish(job, SimError("internal", fault.message), code=fault.code)
            elif fault is not None and fault.action == "job_running":
                job["state"] = fault.job_state
                job["message"] = fault.job_state
                if fault.seconds is not None:
                    timer = threading.Timer(fault.seconds, self._complete, (job, work))
                    timer.daemon = True
                    timer.start()
            else:
                self._complete(job, work)
            self.state.save()
            return job

    def _complete(self, job: dict[str, Any], work: Callable[[], Any]) -> None:
        with self.state.lock:
            try:
                work()
            except SimError as exc:
                self._finish(job, exc)
            except Exception as exc:  # a job must end, even on a simulator bug
                self._finish(job, SimError("internal", f"Internal error: {exc}"))
            else:
                self._finish(job, None)
            self.state.save()

    @staticmethod
    def _finish(job: dict[str, Any], exc: SimError | None, code: str | None = None) -> None:
        job["end_time"] = time.time()
        if exc is None:
            job.update(state="success", message="success", code=0)
            return
        code = code or exc.rest_code
        job.update(state="failure", message=exc.message, code=int(code),
                   error={"code": str(code), "message": exc.message}, _kind=exc.kind)

    def get(self, uuid: str) -> dict[str, Any]:
        with self.state.lock:
            job = self.state.doc["jobs"].get(uuid)
            if job is None:
                raise SimError("not_found", "entry doesn't exist", target="uuid")
            return dict(job)

    def wait(self, job: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The job after at most TIMEOUT seconds (return_timeout semantics)."""
        deadline = time.time() + timeout
        while True:
            cur = self.get(job["uuid"])
            if cur["state"] in TERMINAL or time.time() >= deadline:
                return cur
            time.sleep(min(0.05, max(0.0, deadline - time.time())))
