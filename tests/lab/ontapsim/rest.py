"""REST API routing and handlers (/api/...), shaped like ONTAP's (reference sections A/D)."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

from . import records as R
from .auth import Auth
from .errors import SimError
from .faults import Knobs
from .jobs import Jobs
from .ops import Ops, check_snapshot_name
from .query import CONTROL_PARAMS, apply_filters, order, select_fields
from .state import State, new_uuid

CG_VERSION = (9, 10, 1)
FILE_RESTORE_VERSION = (9, 10, 1)


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


def _int_param(req: Request, name: str, default: int) -> int:
    raw = req.query.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(float(raw))
    except ValueError:
        raise SimError("invalid", f'Invalid value "{raw}" for "{name}".', target=name) from None


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "yes")


Handler = Callable[..., Response]


class RestApi:
    def __init__(self, state: State, ops: Ops, jobs: Jobs, knobs: Knobs, auth: Auth) -> None:
        self.auth = auth
        self.st = state
        self.ops = ops
        self.jobs = jobs
        self.knobs = knobs
        U = r"([^/]+)"
        self.routes: list[tuple[str, re.Pattern[str], Handler, str]] = []
        for method, pattern, handler, action in [
            ("GET", "/api/cluster", self.get_cluster, "read"),
            ("GET", "/api/cluster/nodes", self.list_nodes, "read"),
            ("GET", f"/api/cluster/nodes/{U}", self.get_node, "read"),
            ("GET", "/api/cluster/jobs", self.list_jobs, "read"),
            ("GET", f"/api/cluster/jobs/{U}", self.get_job, "read"),
            ("GET", "/api/svm/svms", self.list_svms, "read"),
            ("GET", f"/api/svm/svms/{U}", self.get_svm, "read"),
            ("GET", "/api/network/ip/interfaces", self.list_lifs, "read"),
            ("GET", f"/api/network/ip/interfaces/{U}", self.get_lif, "read"),
            ("GET", "/api/storage/volumes", self.list_volumes, "read"),
            ("GET", r"/api/storage/volumes/\*/snapshots", self.list_all_snapshots, "read"),
            ("GET", f"/api/storage/volumes/{U}", self.get_volume, "read"),
            ("PATCH", f"/api/storage/volumes/{U}", self.patch_volume, "read"),  # action checked inside
            ("GET", f"/api/storage/volumes/{U}/snapshots", self.list_snapshots, "read"),
            ("POST", f"/api/storage/volumes/{U}/snapshots", self.post_snapshot, "snapshot_create"),
            ("GET", f"/api/storage/volumes/{U}/snapshots/{U}", self.get_snapshot, "read"),
            ("PATCH", f"/api/storage/volumes/{U}/snapshots/{U}", self.patch_snapshot, "snapshot_modify"),
            ("DELETE", f"/api/storage/volumes/{U}/snapshots/{U}", self.delete_snapshot, "snapshot_delete"),
            ("GET", "/api/storage/luns", self.list_luns, "read"),
            ("GET", f"/api/storage/luns/{U}", self.get_lun, "read"),
            ("PATCH", f"/api/storage/luns/{U}", self.patch_lun, "restore"),
            ("GET", "/api/snapmirror/relationships", self.list_relationships, "read"),
            ("GET", f"/api/snapmirror/relationships/{U}", self.get_relationship, "read"),
            ("GET", f"/api/snapmirror/relationships/{U}/transfers", self.list_transfers, "read"),
            ("POST", f"/api/snapmirror/relationships/{U}/transfers", self.post_transfer, "snapmirror_update"),
            ("GET", f"/api/snapmirror/relationships/{U}/transfers/{U}", self.get_transfer, "read"),
            ("GET", "/api/snapmirror/policies", self.list_policies, "read"),
            ("GET", f"/api/snapmirror/policies/{U}", self.get_policy, "read"),
            ("GET", "/api/application/consistency-groups", self.list_cgs, "read"),
            ("POST", "/api/application/consistency-groups", self.post_cg, "cg_manage"),
            ("GET", f"/api/application/consistency-groups/{U}", self.get_cg, "read"),
            ("DELETE", f"/api/application/consistency-groups/{U}", self.delete_cg, "cg_manage"),
            ("GET", f"/api/application/consistency-groups/{U}/snapshots", self.list_cg_snapshots, "read"),
            ("POST", f"/api/application/consistency-groups/{U}/snapshots", self.post_cg_snapshot,
             "snapshot_create"),
            ("GET", f"/api/application/consistency-groups/{U}/snapshots/{U}", self.get_cg_snapshot, "read"),
            ("DELETE", f"/api/application/consistency-groups/{U}/snapshots/{U}", self.delete_cg_snapshot,
             "snapshot_delete"),
            ("POST", "/api/private/cli/volume/snapshot/restore-file", self.cli_restore_file, "restore"),
        ]:
            self.routes.append((method, re.compile(pattern + "$"), handler, action))

    # -- dispatch ----------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        try:
            return self._dispatch(req)
        except SimError as exc:
            return Response(exc.http_status, exc.rest_body())

    def _dispatch(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        if path.startswith("/api/application/consistency-groups") and not self.st.at_least(CG_VERSION):
            # The CG API arrived in 9.10.1; older releases do not know the path at all.
            raise SimError("not_found", "API not found")
        allowed_methods = []
        for method, pattern, handler, action in self.routes:
            m = pattern.match(path)
            if not m:
                continue
            allowed_methods.append(method)
            if method != req.method:
                continue
            self._check(req, action)
            if req.svm_name or req.svm_uuid:
                with self.st.lock:
                    svm = self.st.find_svm(req.svm_name, req.svm_uuid)
                req.svm_name, req.svm_uuid = svm["name"], svm["uuid"]
            return handler(req, *[urllib.parse.unquote(g) for g in m.groups()])
        if allowed_methods:
            if req.method == "OPTIONS":
                return Response(200, {}, {"Allow": ", ".join(sorted(set(allowed_methods)))})
            raise SimError("not_supported", f'The "{req.method}" method is not supported for this API.')
        raise SimError("not_found", "API not found")

    def _check(self, req: Request, action: str) -> None:
        if not self.auth.allowed(req.user, action):
            raise SimError("permission", "not authorized for that command")

    # -- helpers -------------------------------------------------------------------------------
    def _collection(self, req: Request, recs: list[dict[str, Any]], keys: tuple[str, ...] = ("uuid", "name"),
                    extra_filters: dict[str, str] | None = None) -> Response:
        filters = {k: v for k, v in req.query.items() if k not in CONTROL_PARAMS and not k.startswith("start.")}
        filters.update(extra_filters or {})
        if req.svm_name and "svm.name" not in filters and any("svm" in r for r in recs):
            # Tunnelled to an SVM: only that SVM's objects (cluster-scoped ones drop out).
            filters["svm.name"] = f'"{req.svm_name}"'
        recs = order(apply_filters(recs, filters), req.query.get("order_by"))
        total = len(recs)
        start = _int_param(req, "start.index", 0)
        page = recs[start:]
        links: dict[str, Any] = {"self": {"href": req.path + (f"?{req.raw_query}" if req.raw_query else "")}}
        if "max_records" in req.query:
            size = _int_param(req, "max_records", 0)
            page = recs[start:start + size]
            if start + size < total:
                q = {k: v for k, v in req.query.items() if k != "start.index"}
                q["start.index"] = str(start + size)
                links["next"] = {"href": req.path + "?" + urllib.parse.urlencode(q, safe="*,.!|")}
        if _truthy(req.query.get("return_records", "true")):
            out_recs = [select_fields(r, req.query.get("fields"), keys) for r in page]
            return Response(200, {"records": out_recs, "num_records": len(out_recs), "_links": links})
        return Response(200, {"num_records": total, "_links": links})

    def _one(self, req: Request, rec: dict[str, Any], keys: tuple[str, ...] = ("uuid", "name")) -> Response:
        if req.query.get("fields"):
            return Response(200, select_fields(rec, req.query["fields"], keys))
        return Response(200, rec)

    def _job_response(self, req: Request, job: dict[str, Any], created: bool = False,
                      location: str | None = None, records: list[dict[str, Any]] | None = None) -> Response:
        """202 + job, or with return_timeout the terminal outcome (201/200, or the job's error)."""
        headers = {"Location": location} if location else {}
        timeout = _int_param(req, "return_timeout", 0)
        if timeout < 0 or timeout > 120:
            raise SimError("invalid", "return_timeout must be between 0 and 120.", target="return_timeout")
        if timeout > 0:
            job = self.jobs.wait(job, timeout)
        if timeout > 0 and job["state"] == "success":
            body: dict[str, Any] = {"job": R.job_link(job)}
            if records is not None and _truthy(req.query.get("return_records", "false")):
                body.update(num_records=len(records), records=records)
            return Response(201 if created else 200, body, headers)
        if timeout > 0 and job["state"] == "failure":
            kind = job.get("_kind", "internal")
            exc = SimError(kind, job["message"])
            body = exc.rest_body()
            body["error"]["code"] = job["error"]["code"]
            body["job"] = R.job_link(job)
            return Response(exc.http_status, body)
        return Response(202, {"job": R.job_link(job)}, headers)

    def _job_fault(self, req: Request):
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

    # -- cluster ---------------------------------------------------------------------------------
    def get_cluster(self, req: Request) -> Response:
        with self.st.lock:
            return self._one(req, R.cluster(self.st), keys=())

    def list_nodes(self, req: Request) -> Response:
        with self.st.lock:
            return self._collection(req, [R.node(self.st, n) for n in self.st.doc["nodes"]])

    def get_node(self, req: Request, nu: str) -> Response:
        with self.st.lock:
            for n in self.st.doc["nodes"]:
                if n["uuid"] == nu:
                    return self._one(req, R.node(self.st, n))
        raise SimError("not_found", "entry doesn't exist", target="uuid")

    def list_jobs(self, req: Request) -> Response:
        with self.st.lock:
            return self._collection(req, [R.job(j) for j in self.st.doc["jobs"].values()], keys=("uuid",))

    def get_job(self, req: Request, ju: str) -> Response:
        return self._one(req, R.job(self.jobs.get(ju)), keys=("uuid",))

    # -- SVMs and LIFs -----------------------------------------------------------------------------
    def list_svms(self, req: Request) -> Response:
        with self.st.lock:
            recs = [R.svm(self.st, s) for s in self.st.doc["svms"].values()]
            if req.svm_name:
                recs = [r for r in recs if r["name"] == req.svm_name]
            return self._collection(req, recs)

    def get_svm(self, req: Request, su: str) -> Response:
        with self.st.lock:
            s = self.st.doc["svms"].get(su)
            if s is None:
                raise SimError("not_found", "entry doesn't exist", target="uuid")
            return self._one(req, R.svm(self.st, s))

    def list_lifs(self, req: Request) -> Response:
        with self.st.lock:
            return self._collection(req, [R.ip_interface(self.st, u, lif) for u, lif in self.st.doc["lifs"].items()])

    def get_lif(self, req: Request, lu: str) -> Response:
        with self.st.lock:
            lif = self.st.doc["lifs"].get(lu)
            if lif is None:
                raise SimError("not_found", "entry doesn't exist", target="uuid")
            return self._one(req, R.ip_interface(self.st, lu, lif))

    # -- volumes -------------------------------------------------------------------------------------
    def list_volumes(self, req: Request) -> Response:
        with self.st.lock:
            return self._collection(req, [R.volume(self.st, v) for v in self.st.doc["volumes"].values()])

    def get_volume(self, req: Request, vu: str) -> Response:
        with self.st.lock:
            return self._one(req, R.volume(self.st, self._volume(req, vu)))

    def patch_volume(self, req: Request, vu: str) -> Response:
        # restore_to may come as query parameters, dotted body keys or a nested body.
        restore = dict(nest({k: v for k, v in req.query.items() if k.startswith("restore_to.")}).get("restore_to", {}))
        body = req.body
        if isinstance(body.get("restore_to"), dict):
            for k, v in body["restore_to"].items():
                if isinstance(v, dict) and isinstance(restore.get(k), dict):
                    restore[k].update(v)
                else:
                    restore[k] = v
        # Only restores are simulated; any other volume attribute is refused as ONTAP refuses unknown ones.
        self._reject_unknown({k: v for k, v in body.items() if k != "restore_to"}, set())
        if not restore:
            raise SimError("missing", 'Missing value for "restore_to" (the only volume change this simulator '
                                      "supports).", target="restore_to")
        if ("path" in restore or "restore_path" in restore) and not self.st.at_least(FILE_RESTORE_VERSION):
            key = "restore_to.path" if "path" in restore else "restore_to.restore_path"
            raise SimError("unexpected_argument", f'Unexpected argument "{key}".', target=key)
        self._check(req, "restore")
        snap_ref = restore.get("snapshot") or {}
        if not isinstance(snap_ref, dict) or not (snap_ref.get("name") or snap_ref.get("uuid")):
            raise SimError("missing", 'Missing value for "restore_to.snapshot.name" or "restore_to.snapshot.uuid".',
                           target="restore_to.snapshot")
        fault = self._job_fault(req)
        with self.st.lock:
            vol = self._volume(req, vu)
            snap = self.st.find_snapshot(vol, snap_ref.get("name"), snap_ref.get("uuid"))
            svm = self.st.doc["svms"][vol["svm"]]
            if "path" in restore:
                path, dest = restore["path"], restore.get("restore_path")

                def work() -> None:
                    self.ops.restore_file(vol, snap, path, dest)
            else:
                force = _truthy(snap_ref.get("force", False))

                def work() -> None:
                    self.ops.restore_volume(vol, snap, force)
            job = self.jobs.run(f"PATCH /api/storage/volumes/{vu}", svm, work, fault)
        return self._job_response(req, job)

    # -- snapshots ----------------------------------------------------------------------------------
    def list_all_snapshots(self, req: Request) -> Response:
        with self.st.lock:
            recs = [R.snapshot(self.st, v, s) for v in self.st.doc["volumes"].values() for s in v["snapshots"]]
            return self._collection(req, recs)

    def list_snapshots(self, req: Request, vu: str) -> Response:
        with self.st.lock:
            vol = self._volume(req, vu)
            return self._collection(req, [R.snapshot(self.st, vol, s) for s in vol["snapshots"]])

    def get_snapshot(self, req: Request, vu: str, su: str) -> Response:
        with self.st.lock:
            vol = self._volume(req, vu)
            return self._one(req, R.snapshot(self.st, vol, self.st.find_snapshot(vol, uuid=su)))

    def post_snapshot(self, req: Request, vu: str) -> Response:
        body = req.body
        self._reject_unknown(body, {"name", "comment", "snapmirror_label", "svm", "expiry_time", "volume"})
        name = check_snapshot_name(body.get("name"))
        with self.st.lock:
            vol = self._volume(req, vu)
        fault = self._job_fault(req)
        self.knobs.delay("snapshot_create")
        with self.st.lock:
            vol = self._volume(req, vu)
            svm = self.st.doc["svms"][vol["svm"]]
            made: list[dict[str, Any]] = []

            def work() -> None:
                made.extend(self.ops.create_snapshots([vol], name, body.get("comment"), body.get("snapmirror_label")))
                if body.get("expiry_time"):
                    made[0]["expiry_time"] = body["expiry_time"]
            job = self.jobs.run(f"POST /api/storage/volumes/{vu}/snapshots", svm, work, fault)
            recs = [R.snapshot(self.st, vol, s) for s in made]
        loc = f"/api/storage/volumes/{vu}/snapshots?name={urllib.parse.quote(name)}"
        return self._job_response(req, job, created=True, location=loc, records=recs)

    def patch_snapshot(self, req: Request, vu: str, su: str) -> Response:
        body = req.body
        self._reject_unknown(body, {"name", "comment", "snapmirror_label", "expiry_time"})
        fault = self._job_fault(req)
        with self.st.lock:
            vol = self._volume(req, vu)
            snap = self.st.find_snapshot(vol, uuid=su)
            svm = self.st.doc["svms"][vol["svm"]]
            job = self.jobs.run(f"PATCH /api/storage/volumes/{vu}/snapshots/{su}", svm,
                                lambda: self.ops.modify_snapshot(vol, snap, body), fault)
        return self._job_response(req, job)

    def delete_snapshot(self, req: Request, vu: str, su: str) -> Response:
        fault = self._job_fault(req)
        with self.st.lock:
            vol = self._volume(req, vu)
            snap = self.st.find_snapshot(vol, uuid=su)
            svm = self.st.doc["svms"][vol["svm"]]
            job = self.jobs.run(f"DELETE /api/storage/volumes/{vu}/snapshots/{su}", svm,
                                lambda: self.ops.delete_snapshot(vol, snap), fault)
        return self._job_response(req, job)

    # -- LUNs -------------------------------------------------------------------------------------------
    def list_luns(self, req: Request) -> Response:
        with self.st.lock:
            return self._collection(req, [R.lun(self.st, lu) for lu in self.st.doc["luns"].values()])

    def get_lun(self, req: Request, lu: str) -> Response:
        with self.st.lock:
            lun = self.st.doc["luns"].get(lu)
            if lun is None:
                raise SimError("not_found", "entry doesn't exist", target="uuid")
            return self._one(req, R.lun(self.st, lun))

    def patch_lun(self, req: Request, lu: str) -> Response:
        body = nest(req.body)
        self._reject_unknown(body, {"clone"})
        source = ((body.get("clone") or {}).get("source") or {}).get("name")
        if not source:
            raise SimError("missing", 'Missing value for "clone.source.name".', target="clone.source.name")
        with self.st.lock:
            lun = self.st.doc["luns"].get(lu)
            if lun is None:
                raise SimError("lun_not_found", "The specified LUN was not found.", target="uuid")
            self.ops.lun_clone_overwrite(lun, source)
        return Response(200, {})

    # -- SnapMirror ---------------------------------------------------------------------------------
    def list_relationships(self, req: Request) -> Response:
        # One simulated cluster holds both ends, so list_destinations_only changes nothing.
        with self.st.lock:
            recs = [R.relationship(self.st, r) for r in self.st.doc["relationships"].values()]
            return self._collection(req, recs, keys=("uuid",))

    def _rel(self, ru: str) -> dict[str, Any]:
        rel = self.st.doc["relationships"].get(ru)
        if rel is None:
            raise SimError("not_found", "entry doesn't exist", target="uuid")
        return rel

    def get_relationship(self, req: Request, ru: str) -> Response:
        with self.st.lock:
            return self._one(req, R.relationship(self.st, self._rel(ru)), keys=("uuid",))

    def list_transfers(self, req: Request, ru: str) -> Response:
        with self.st.lock:
            rel = self._rel(ru)
            return self._collection(req, [R.transfer(self.st, rel, x) for x in rel.get("transfers") or []],
                                    keys=("uuid",))

    def get_transfer(self, req: Request, ru: str, xu: str) -> Response:
        with self.st.lock:
            rel = self._rel(ru)
            for x in rel.get("transfers") or []:
                if x["uuid"] == xu:
                    return self._one(req, R.transfer(self.st, rel, x), keys=("uuid",))
        raise SimError("not_found", "entry doesn't exist", target="uuid")

    def post_transfer(self, req: Request, ru: str) -> Response:
        body = req.body
        self._reject_unknown(body, {"source_snapshot", "storage_efficiency_enabled"})
        fault = self._job_fault(req)
        with self.st.lock:
            rel = self._rel(ru)
            dst = self.st.doc["volumes"][rel["destination"]]
            svm = self.st.doc["svms"][dst["svm"]]
            xu = new_uuid()

            def work() -> None:
                try:
                    self.ops.transfer(rel, body.get("source_snapshot"), xu)
                except SimError as exc:
                    rel.update(healthy=False, unhealthy_reason=exc.message)
                    rel.setdefault("transfers", []).append({"uuid": xu, "state": "failed", "end_time": None,
                                                            "snapshots": []})
                    raise
            job = self.jobs.run(f"POST /api/snapmirror/relationships/{ru}/transfers", svm, work, fault)
        return self._job_response(req, job, created=True,
                                  location=f"/api/snapmirror/relationships/{ru}/transfers/{xu}")

    def list_policies(self, req: Request) -> Response:
        with self.st.lock:
            return self._collection(req, [R.policy(p) for p in self.st.doc["policies"].values()])

    def get_policy(self, req: Request, pu: str) -> Response:
        with self.st.lock:
            p = self.st.doc["policies"].get(pu)
            if p is None:
                raise SimError("not_found", "entry doesn't exist", target="uuid")
            return self._one(req, R.policy(p))

    # -- consistency groups (9.10.1+) ------------------------------------------------------------
    def _cg(self, req: Request, cu: str) -> dict[str, Any]:
        cg = self.st.doc["cgs"].get(cu)
        if cg is None or (req.svm_uuid and cg["svm"] != req.svm_uuid):
            raise SimError("not_found", "entry doesn't exist", target="uuid")
        return cg

    def list_cgs(self, req: Request) -> Response:
        with self.st.lock:
            return self._collection(req, [R.cg(self.st, c) for c in self.st.doc["cgs"].values()])

    def get_cg(self, req: Request, cu: str) -> Response:
        with self.st.lock:
            return self._one(req, R.cg(self.st, self._cg(req, cu)))

    def post_cg(self, req: Request) -> Response:
        body = req.body
        self._reject_unknown(body, {"name", "svm", "volumes", "snapshot_policy"})
        names = []
        for v in body.get("volumes") or []:
            action = ((v.get("provisioning_options") or {}).get("action"))
            if action != "add":
                raise SimError("invalid", f'Volume "{v.get("name")}": only existing volumes are supported; set '
                                          '"provisioning_options.action" to "add".',
                               target="volumes.provisioning_options.action")
            names.append(v.get("name"))
        fault = self._job_fault(req)
        with self.st.lock:
            svm = self._svm_for_body(req, body)
            if svm is None:
                raise SimError("missing", 'Missing value for "svm".', target="svm")
            cg_uuid: list[str] = []

            def work() -> None:
                cg_uuid.append(self.ops.cg_create(svm, body.get("name"), names)["uuid"])
            job = self.jobs.run("POST /api/application/consistency-groups", svm, work, fault)
        loc = (f"/api/application/consistency-groups/{cg_uuid[0]}" if cg_uuid else
               f"/api/application/consistency-groups?name={urllib.parse.quote(str(body.get('name')))}")
        return self._job_response(req, job, created=True, location=loc)

    def delete_cg(self, req: Request, cu: str) -> Response:
        fault = self._job_fault(req)
        with self.st.lock:
            cg = self._cg(req, cu)
            svm = self.st.doc["svms"][cg["svm"]]
            job = self.jobs.run(f"DELETE /api/application/consistency-groups/{cu}", svm,
                                lambda: self.ops.cg_delete(cg), fault)
        return self._job_response(req, job)

    def list_cg_snapshots(self, req: Request, cu: str) -> Response:
        with self.st.lock:
            cg = self._cg(req, cu)
            return self._collection(req, [R.cg_snapshot(self.st, cg, s) for s in cg["snapshots"]])

    def get_cg_snapshot(self, req: Request, cu: str, su: str) -> Response:
        with self.st.lock:
            cg = self._cg(req, cu)
            for s in cg["snapshots"]:
                if s["uuid"] == su:
                    return self._one(req, R.cg_snapshot(self.st, cg, s))
        raise SimError("not_found", "entry doesn't exist", target="uuid")

    def post_cg_snapshot(self, req: Request, cu: str) -> Response:
        body = req.body
        self._reject_unknown(body, {"name", "comment", "snapmirror_label", "consistency_type"})
        name = check_snapshot_name(body.get("name"))
        with self.st.lock:
            self._cg(req, cu)
        fault = self._job_fault(req)
        self.knobs.delay("cg_snapshot")
        with self.st.lock:
            cg = self._cg(req, cu)
            svm = self.st.doc["svms"][cg["svm"]]
            job = self.jobs.run(f"POST /api/application/consistency-groups/{cu}/snapshots", svm,
                                lambda: self.ops.cg_snapshot(cg, name, body.get("comment"),
                                                             body.get("snapmirror_label")), fault)
        loc = f"/api/application/consistency-groups/{cu}/snapshots?name={urllib.parse.quote(name)}"
        return self._job_response(req, job, created=True, location=loc)

    def delete_cg_snapshot(self, req: Request, cu: str, su: str) -> Response:
        fault = self._job_fault(req)
        with self.st.lock:
            cg = self._cg(req, cu)
            rec = next((s for s in cg["snapshots"] if s["uuid"] == su), None)
            if rec is None:
                raise SimError("not_found", "entry doesn't exist", target="uuid")
            svm = self.st.doc["svms"][cg["svm"]]
            job = self.jobs.run(f"DELETE /api/application/consistency-groups/{cu}/snapshots/{su}", svm,
                                lambda: self.ops.cg_snapshot_delete(cg, rec), fault)
        return self._job_response(req, job)

    # -- private CLI passthrough -----------------------------------------------------------------
    def cli_restore_file(self, req: Request) -> Response:
        body = req.body
        self._reject_unknown(body, {"vserver", "volume", "snapshot", "path", "restore_path",
                                    "split_disabled", "ignore_streams", "snapshot_instance_uuid"})
        for key in ("volume", "snapshot", "path"):
            if not body.get(key):
                raise SimError("missing", f'Missing value for "{key}".', target=key)
        vserver = body.get("vserver") or req.svm_name
        if not vserver:
            raise SimError("missing", 'Missing value for "vserver".', target="vserver")
        with self.st.lock:
            self.st.find_svm(vserver)
            vol = self.st.find_volume(vserver, body["volume"])
            snap = self.st.find_snapshot(vol, body["snapshot"])
            self.ops.restore_file(vol, snap, body["path"], body.get("restore_path"))
        return Response(200, {})
