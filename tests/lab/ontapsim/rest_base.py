"""REST plumbing shared by the handler modules: request/response, body normalisation,
collection queries, job answers (202 / return_timeout) and lookups."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

from . import records as R
from .auth import Auth
from .config import ROLE_ACTIONS
from .errors import SimError
from .faults import Fault, Knobs
from .jobs import Jobs
from .ops import Ops
from .query import CONTROL_PARAMS, apply_filters, order, select_fields
from .state import State


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    user: dict[str, Any]
    svm_name: str | None = None     # X-Dot-SVM-Name / -UUID tunnelling
    svm_uuid: str | None = None
    raw_query: str = ""


@dataclass
class Response:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)


def nest(body: Any) -> Any:
    """Dotted body keys ({"restore_to.snapshot.name": x}) as nested objects, merged."""
    if isinstance(body, list):
        return [nest(b) for b in body]
    if not isinstance(body, dict):
        return body
    out: dict[str, Any] = {}
    for key, value in body.items():
        parts = key.split(".")
        cur = out
        for p in parts[:-1]:
            nxt = cur.get(p)
            if not isinstance(nxt, dict):
                nxt = cur[p] = {}
            cur = nxt
        value = nest(value)
        if isinstance(value, dict) and isinstance(cur.get(parts[-1]), dict):
            cur[parts[-1]].update(value)
        else:
            cur[parts[-1]] = value
    return out


def int_param(req: Request, name: str, default: int) -> int:
    raw = req.query.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(float(raw))
    except ValueError:
        raise SimError("invalid", f'Invalid value "{raw}" for "{name}".', target=name) from None


def truthy(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "yes")


class HandlerBase:
    """What every handler mixin needs; RestApi sets these attributes."""

    st: State
    ops: Ops
    jobs: Jobs
    knobs: Knobs
    auth: Auth

    def _check(self, req: Request, action: str) -> None:
        if not self.auth.allowed(req.user, action):
            raise SimError("permission", "not authorized for that command")

    def _check_admin(self, req: Request) -> None:
        """Changes the simulator has no action for (volume size) need every action of the admin role."""
        if not all(self.auth.allowed(req.user, a) for a in ROLE_ACTIONS["admin"]):
            raise SimError("permission", "not authorized for that command")

    def _collection(self, req: Request, recs: list[dict[str, Any]], keys: tuple[str, ...] = ("uuid", "name"),
                    extra_filters: dict[str, str] | None = None) -> Response:
        filters = {k: v for k, v in req.query.items() if k not in CONTROL_PARAMS and not k.startswith("start.")}
        filters.update(extra_filters or {})
        if req.svm_name and "svm.name" not in filters and any("svm" in r for r in recs):
            # Tunnelled to an SVM: only that SVM's objects (cluster-scoped ones drop out).
            filters["svm.name"] = f'"{req.svm_name}"'
        recs = order(apply_filters(recs, filters), req.query.get("order_by"))
        total = len(recs)
        start = int_param(req, "start.index", 0)
        page = recs[start:]
        links: dict[str, Any] = {"self": {"href": req.path + (f"?{req.raw_query}" if req.raw_query else "")}}
        if "max_records" in req.query:
            size = int_param(req, "max_records", 0)
            page = recs[start:start + size]
            if start + size < total:
                q = {k: v for k, v in req.query.items() if k != "start.index"}
                q["start.index"] = str(start + size)
                links["next"] = {"href": req.path + "?" + urllib.parse.urlencode(q, safe="*,.!|")}
        if truthy(req.query.get("return_records", "true")):
            out_recs = [select_fields(r, req.query.get("fields"), keys) for r in page]
            return Response(200, {"records": out_recs, "num_records": len(out_recs), "_links": links})
        return Response(200, {"num_records": total, "_links": links})

    def _one(self, req: Request, rec: dict[str, Any], keys: tuple[str, ...] = ("uuid", "name")) -> Response:
        if req.query.get("fields"):
            return Response(200, select_fields(rec, req.query["fields"], keys))
        return Response(200, rec)

    def _job_response(self, req: Request, job: dict[str, Any], created: bool = False,
                      location: str | None = None,
                      records: Callable[[], list[dict[str, Any]]] | None = None) -> Response:
        """202 + job, or with return_timeout the terminal outcome (201/200, or the job's error)."""
        headers = {"Location": location} if location else {}
        timeout = int_param(req, "return_timeout", 0)
        if timeout < 0 or timeout > 120:
            raise SimError("invalid", "return_timeout must be between 0 and 120.", target="return_timeout")
        if timeout > 0:
            job = self.jobs.wait(job, timeout)
        if timeout > 0 and job["state"] == "success":
            body: dict[str, Any] = {"job": R.job_link(job)}
            if records is not None and truthy(req.query.get("return_records", "false")):
                recs = records()
                body.update(num_records=len(recs), records=recs)
            return Response(201 if created else 200, body, headers)
        if timeout > 0 and job["state"] == "failure":
            kind = job.get("_kind", "internal")
            exc = SimError(kind, job["message"])
            body = exc.rest_body()
            body["error"]["code"] = job["error"]["code"]
            body["job"] = R.job_link(job)
            return Response(exc.http_status, body)
        return Response(202, {"job": R.job_link(job)}, headers)

    def _job_fault(self, req: Request) -> Fault | None:
        return self.knobs.take(req.method, req.path, None, ("job_running", "job_failure"))

    def _svm_for_body(self, req: Request, body: dict[str, Any]) -> dict[str, Any] | None:
        ref = body.get("svm") or {}
        name = ref.get("name") if isinstance(ref, dict) else None
        uuid = ref.get("uuid") if isinstance(ref, dict) else None
        if name or uuid:
            return self.st.find_svm(name, uuid)
        if req.svm_name:
            return self.st.find_svm(req.svm_name)
        return None

    def _volume(self, req: Request, vu: str) -> dict[str, Any]:
        vol = self.st.volume_by_uuid(vu)
        if req.svm_uuid and vol["svm"] != req.svm_uuid:
            raise SimError("not_found", "entry doesn't exist", target="uuid")
        return vol

    @staticmethod
    def _reject_unknown(body: dict[str, Any], allowed: set[str]) -> None:
        for key in body:
            if key not in allowed:
                raise SimError("unexpected_argument", f'Unexpected argument "{key}".', target=key)
