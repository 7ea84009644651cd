"""REST handlers: cluster, nodes, jobs, SVMs, LIFs, volumes (+ restore_to), snapshots, LUNs."""

from __future__ import annotations

import urllib.parse
from typing import Any

from . import records as R
from .errors import SimError
from .ops import check_snapshot_name
from .query import CONTROL_PARAMS, apply_filters
from .rest_base import HandlerBase, Request, Response, int_param, nest, truthy

FILE_RESTORE_VERSION = (9, 10, 1)


class StorageHandlers(HandlerBase):
    # -- cluster ---------------------------------------------------------------------------------
    def get_cluster(self, req: Request) -> Response:
        with self.st.lock:
            return self._one(req, R.cluster(self.st), keys=())

    def get_software(self, req: Request) -> Response:
        with self.st.lock:
            return self._one(req, R.software(self.st), keys=())

    def list_aggregates(self, req: Request) -> Response:
        with self.st.lock:
            return self._collection(req, [R.aggregate(self.st)])

    def get_aggregate(self, req: Request, au: str) -> Response:
        with self.st.lock:
            rec = R.aggregate(self.st)
        if rec["uuid"] != au:
            raise SimError("not_found", "entry doesn't exist", target="uuid")
        return self._one(req, rec)

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

    def list_cluster_peers(self, req: Request) -> Response:
        with self.st.lock:
            return self._collection(req, R.cluster_peers(self.st), keys=("uuid", "name"))

    def get_cluster_peer(self, req: Request, pu: str) -> Response:
        return self._derived_one(req, R.cluster_peers, pu)

    def _derived_one(self, req: Request, records: Any, pu: str) -> Response:
        """One of the records the state derives (peers), by uuid."""
        with self.st.lock:
            for rec in records(self.st):
                if rec["uuid"] == pu:
                    return self._one(req, rec)
        raise SimError("not_found", "entry doesn't exist", target="uuid")

    def list_svm_peers(self, req: Request) -> Response:
        with self.st.lock:
            return self._collection(req, R.svm_peers(self.st), keys=("uuid", "name"))

    def get_svm_peer(self, req: Request, pu: str) -> Response:
        return self._derived_one(req, R.svm_peers, pu)

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
        if "size" in body and not restore:
            return self._resize_volume(req, vu, body)
        # Only restores and size changes are simulated; any other volume attribute is refused as ONTAP
        # refuses unknown ones.
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
                force = truthy(snap_ref.get("force", False))

                def work() -> None:
                    self.ops.restore_volume(vol, snap, force)
            job = self.jobs.run(f"PATCH /api/storage/volumes/{vu}", svm, work, fault)
        return self._job_response(req, job)

    def _resize_volume(self, req: Request, vu: str, body: dict[str, Any]) -> Response:
        """PATCH {"size": bytes}: a job that sets the new size (na_ontap_volume's resize)."""
        self._reject_unknown(body, {"size", "sizing_method"})
        self._check_admin(req)
        fault = self._job_fault(req)
        with self.st.lock:
            vol = self._volume(req, vu)
            svm = self.st.doc["svms"][vol["svm"]]
            job = self.jobs.run(f"PATCH /api/storage/volumes/{vu}", svm,
                                lambda: self.ops.resize_volume(vol, body["size"]), fault)
        return self._job_response(req, job)

    # -- files ---------------------------------------------------------------------------------------
    def get_file(self, req: Request, vu: str, path: str) -> Response:
        """GET /api/storage/volumes/{uuid}/files/{path}: the path comes %2E/%2F-encoded (the router decodes it);
        `.snapshot/<name>/...` reaches into a snapshot. A file, or any path with return_metadata=true: its own
        record; a directory otherwise: its entries as ONTAP lists them, "." and ".." first, each with the
        directory's path, paged by max_records (a `next` link while more follow)."""
        links: dict[str, Any] = {}
        with self.st.lock:
            vol = self._volume(req, vu)
            rec = self.ops.file_info(vol, path)
            recs = [rec]
            if rec["type"] == "directory" and not truthy(req.query.get("return_metadata", False)):
                base = rec["path"]
                svm_name, vname = self.st.vol_key(vol)
                listing = sorted(p.name for p in self.ops.storage.volume_dir(svm_name, vname).joinpath(
                    *[x for x in base.split("/") if x]).iterdir())
                recs = [dict(rec, name=".", size=0), dict(rec, name="..", type="directory", size=0)]
                recs += [dict(self.ops.file_info(vol, "%s/%s" % (base, n) if base else n), path=base) for n in listing]
                start = int_param(req, "start.index", 0)
                size = int_param(req, "max_records", 0) if "max_records" in req.query else len(recs)
                if start + size < len(recs):
                    q = dict(req.query, **{"start.index": str(start + size)})
                    enc = urllib.parse.quote(path, safe="").replace(".", "%2E")
                    links["next"] = {"href": f"/api/storage/volumes/{vu}/files/{enc}?"
                                             + urllib.parse.urlencode(q, safe="*,.!|")}
                recs = recs[start:start + size]
        for r in recs:
            r["volume"] = {"uuid": vol["uuid"], "name": vol["name"]}
        return Response(200, {"records": recs, "num_records": len(recs), **({"_links": links} if links else {})})

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
            vol = self._volume(req, vu)  # a 404 before a fault rule is used up
            fault = self._job_fault(req)
            svm = self.st.doc["svms"][vol["svm"]]
            made: list[dict[str, Any]] = []

            def work() -> None:
                made.extend(self.ops.create_snapshots([vol], name, body.get("comment"), body.get("snapmirror_label")))
                if body.get("expiry_time"):
                    made[0]["expiry_time"] = body["expiry_time"]

            def records() -> list[dict[str, Any]]:
                with self.st.lock:
                    return [R.snapshot(self.st, vol, s) for s in made]
            job = self.jobs.run(f"POST /api/storage/volumes/{vu}/snapshots", svm, work, fault,
                                latency=self.knobs.seconds("snapshot_create"))
        loc = f"/api/storage/volumes/{vu}/snapshots?name={urllib.parse.quote(name)}"
        return self._job_response(req, job, created=True, location=loc, records=records)

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

    def delete_snapshots(self, req: Request, vu: str) -> Response:
        """Bulk DELETE of the volume's snapshots the query's filters select (netapp-ontap's
        delete_collection), one job; without a filter it is refused (sim choice: no delete-all)."""
        filters = {k: v for k, v in req.query.items() if k not in CONTROL_PARAMS}
        if not filters:
            raise SimError("missing", "A bulk DELETE needs at least one field filter (sim).", target="name")
        fault = self._job_fault(req)
        with self.st.lock:
            vol = self._volume(req, vu)
            recs = apply_filters([R.snapshot(self.st, vol, s) for s in vol["snapshots"]], filters)
            snaps = [self.st.find_snapshot(vol, uuid=r["uuid"]) for r in recs]
            svm = self.st.doc["svms"][vol["svm"]]

            def work() -> None:
                for snap in snaps:
                    self.ops.delete_snapshot(vol, snap)
            job = self.jobs.run(f"DELETE /api/storage/volumes/{vu}/snapshots", svm, work, fault)
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
