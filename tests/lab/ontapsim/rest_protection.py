"""REST handlers: SnapMirror relationships/transfers/policies, consistency groups and their
snapshots (9.10.1+), and the private CLI restore-file passthrough."""

from __future__ import annotations

import urllib.parse
from typing import Any

from . import records as R
from .errors import SimError
from .ops import check_snapshot_name
from .rest_base import HandlerBase, Request, Response, int_param, truthy
from .state import new_uuid

# Two-phase CG snapshots (action=start / commit) came with a 2022 REST release; 9.12.1 is the
# simulator's choice (the reference leaves the exact release unconfirmed).
CG_TWO_PHASE_VERSION = (9, 12, 1)


class ProtectionHandlers(HandlerBase):
    # -- SnapMirror ---------------------------------------------------------------------------------
    def list_relationships(self, req: Request) -> Response:
        # A relationship lives on its destination cluster. With list_destinations_only=true the source cluster
        # lists those whose source is one of its volumes: the ones it holds itself (both ends here) and the ones
        # its peers hold (read from their saved state), whose destination names the peer cluster.
        peer_held = truthy(req.query.get("list_destinations_only", "false"))  # a control parameter, no filter
        with self.st.lock:
            recs = [R.relationship(self.st, r) for r in self.st.doc["relationships"].values()]
            if peer_held:
                recs = [r for r in recs if "cluster" not in r["source"]] + self._peer_held()
            return self._collection(req, recs, keys=("uuid",))

    def _peer_held(self) -> list[dict[str, Any]]:
        """The relationships peer clusters hold whose source is a volume of this cluster."""
        me = self.st.doc["cluster"]["name"]
        out = []
        for peer in self.st.peers:
            view = peer.view()
            for r in (view.doc["relationships"].values() if view else []):
                remote = r.get("source_remote") or {}
                if remote.get("cluster") == me and not r.get("restore"):
                    out.append(R.relationship(view, r, held_by=peer.name))
        return out

    def _rel(self, ru: str) -> dict[str, Any]:
        rel = self.st.doc["relationships"].get(ru)
        if rel is None:
            held = next((r for r in self._peer_held() if r["uuid"] == ru), None)
            if held is not None:
                # ONTAP only shows it here with list_destinations_only; it cannot be driven from this side.
                raise SimError("not_destination", f'Relationship "{ru}" ({held["source"]["path"]} -> '
                                                  f'{held["destination"]["path"]}) belongs to its destination '
                                                  f'cluster "{held["destination"]["cluster"]["name"]}": run this '
                                                  "operation there.", target="uuid")
            raise SimError("not_found", "entry doesn't exist", target="uuid")
        return rel

    def get_relationship(self, req: Request, ru: str) -> Response:
        with self.st.lock:
            if truthy(req.query.get("list_destinations_only", "false")):
                held = next((r for r in self._peer_held() if r["uuid"] == ru), None)
                if held is not None:
                    return self._one(req, held, keys=("uuid",))
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

    def post_relationship(self, req: Request) -> Response:
        """Only restore relationships (restore=true) are created here; the lab's mirrors and vaults come
        from the configuration."""
        body = req.body
        self._reject_unknown(body, {"source", "destination", "restore", "policy", "create_destination", "state",
                                    "throttle", "transfer_schedule"})
        if "restore" not in body or not truthy(body.get("restore")):
            raise SimError("not_supported", "This simulator creates restore relationships only "
                                            '("restore": true).', target="restore")
        extra = sorted(set(body) - {"source", "destination", "restore"})
        if extra:
            raise SimError("invalid", f'"{extra[0]}" cannot be set on a restore relationship.', target=extra[0])
        src_path = (body.get("source") or {}).get("path") if isinstance(body.get("source"), dict) else None
        src_cluster = ((body.get("source") or {}).get("cluster") or {}).get("name") \
            if isinstance(body.get("source"), dict) and isinstance(body["source"].get("cluster"), dict) else None
        dst_path = (body.get("destination") or {}).get("path") if isinstance(body.get("destination"), dict) else None
        fault = self._job_fault(req)
        with self.st.lock:
            created: list[str] = []
            # A path that names no volume is refused at once; the relationship's own checks fail the job.
            dst = self.ops.endpoint(dst_path, "destination.path")
            self.ops.source_endpoint(src_path, dst, src_cluster)
            svm = self.st.doc["svms"][dst["svm"]]

            def work() -> None:
                created.append(self.ops.restore_relationship(src_path, dst_path, src_cluster)["uuid"])
            job = self.jobs.run("POST /api/snapmirror/relationships", svm, work, fault)
        loc = (f"/api/snapmirror/relationships/{created[0]}" if created else
               f"/api/snapmirror/relationships?destination.path={urllib.parse.quote(str(dst_path))}")
        return self._job_response(req, job, created=True, location=loc)

    def delete_relationship(self, req: Request, ru: str) -> Response:
        fault = self._job_fault(req)
        with self.st.lock:
            rel = self._rel(ru)
            svm = self.st.doc["svms"][self.st.doc["volumes"][rel["destination"]]["svm"]]
            job = self.jobs.run(f"DELETE /api/snapmirror/relationships/{ru}", svm,
                                lambda: self.ops.delete_relationship(rel), fault)
        return self._job_response(req, job)

    def post_transfer(self, req: Request, ru: str) -> Response:
        body = req.body
        self._reject_unknown(body, {"source_snapshot", "storage_efficiency_enabled", "files"})
        fault = self._job_fault(req)
        with self.st.lock:
            rel = self._rel(ru)
            if "files" in body and not rel.get("restore"):
                raise SimError("invalid", '"files" is only valid for a transfer on a restore relationship.',
                               target="files")
            dst = self.st.doc["volumes"][rel["destination"]]
            svm = self.st.doc["svms"][dst["svm"]]
            xu = new_uuid()

            def work() -> None:
                try:
                    if rel.get("restore"):
                        self.ops.restore_transfer(rel, body.get("source_snapshot"), body.get("files"), xu)
                        return
                    self.ops.transfer(rel, body.get("source_snapshot"), xu)
                except SimError as exc:
                    rel.update(healthy=False, unhealthy_reason=exc.message)
                    rel.setdefault("transfers", []).append({"uuid": xu, "state": "failed", "end_time": None,
                                                            "snapshots": []})
                    raise
            job = self.jobs.run(f"POST /api/snapmirror/relationships/{ru}/transfers", svm, work, fault,
                                latency=self.knobs.seconds("snapmirror_transfer"))
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

    @staticmethod
    def _cg_snap(cg: dict[str, Any], su: str) -> dict[str, Any]:
        rec = next((s for s in cg["snapshots"] if s["uuid"] == su), None)
        if rec is None:
            raise SimError("not_found", "entry doesn't exist", target="uuid")
        return rec

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
            job = self.jobs.run("POST /api/application/consistency-groups", svm, work, fault,
                                latency=self.knobs.seconds("cg_create"))
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
            return self._one(req, R.cg_snapshot(self.st, cg, self._cg_snap(cg, su)))

    def post_cg_snapshot(self, req: Request, cu: str) -> Response:
        body = req.body
        self._reject_unknown(body, {"name", "comment", "snapmirror_label", "consistency_type"})
        name = check_snapshot_name(body.get("name"))
        commit_within = self._two_phase(req, "start")
        with self.st.lock:
            cg = self._cg(req, cu)  # a 404 before a fault rule is used up
            fault = self._job_fault(req)
            svm = self.st.doc["svms"][cg["svm"]]
            job = self.jobs.run(f"POST /api/application/consistency-groups/{cu}/snapshots", svm,
                                lambda: self.ops.cg_snapshot(cg, name, body.get("comment"),
                                                             body.get("snapmirror_label"), commit_within), fault,
                                latency=self.knobs.seconds("cg_snapshot"))
        loc = f"/api/application/consistency-groups/{cu}/snapshots?name={urllib.parse.quote(name)}"
        return self._job_response(req, job, created=True, location=loc)

    def _two_phase(self, req: Request, expected: str) -> float | None:
        """The action_timeout of a two-phase CG snapshot call (action=start|commit), or None."""
        action = req.query.get("action")
        if action is None:
            return None
        if not self.st.at_least(CG_TWO_PHASE_VERSION):
            raise SimError("unexpected_argument", 'Unexpected argument "action".', target="action")
        if action != expected:
            raise SimError("invalid", f'Invalid value "{action}" for "action" here; expected "{expected}".',
                           target="action")
        secs = int_param(req, "action_timeout", 7)
        if not 5 <= secs <= 120:
            raise SimError("invalid", "action_timeout must be between 5 and 120 seconds.", target="action_timeout")
        return float(secs)

    def patch_cg_snapshot(self, req: Request, cu: str, su: str) -> Response:
        """PATCH …/snapshots/{uuid}?action=commit ends a snapshot started with action=start."""
        self._reject_unknown(req.body, set())
        if req.query.get("action") is None:
            raise SimError("missing", 'Missing value for "action" (only action=commit is supported).', target="action")
        self._two_phase(req, "commit")
        fault = self._job_fault(req)
        with self.st.lock:
            cg = self._cg(req, cu)
            rec = self._cg_snap(cg, su)
            svm = self.st.doc["svms"][cg["svm"]]
            job = self.jobs.run(f"PATCH /api/application/consistency-groups/{cu}/snapshots/{su}", svm,
                                lambda: self.ops.cg_snapshot_commit(cg, rec), fault,
                                latency=self.knobs.seconds("cg_commit"))
        return self._job_response(req, job)

    def delete_cg_snapshot(self, req: Request, cu: str, su: str) -> Response:
        fault = self._job_fault(req)
        with self.st.lock:
            cg = self._cg(req, cu)
            rec = self._cg_snap(cg, su)
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
