"""REST API routing (/api/...): ONTAP's paths and methods mapped to the handler modules."""

from __future__ import annotations

import re
import urllib.parse
from typing import Callable

from .auth import Auth
from .errors import SimError
from .faults import Knobs
from .jobs import Jobs
from .ops import Ops
from .query import check_fields
from .rest_base import Request, Response, nest
from .rest_protection import ProtectionHandlers
from .rest_security import SecurityHandlers
from .rest_storage import StorageHandlers
from .state import State

__all__ = ["Request", "Response", "RestApi", "nest"]

CG_VERSION = (9, 10, 1)
Handler = Callable[..., Response]

# GET handler -> the REST resource whose field names (fields.json) its `fields=` may use.
RESOURCE_OF: dict[str, str] = {
    "get_cluster": "cluster", "list_nodes": "node", "get_node": "node", "list_jobs": "job", "get_job": "job",
    "get_software": "software", "list_svms": "svm", "get_svm": "svm", "list_svm_peers": "svm_peer",
    "get_svm_peer": "svm_peer", "list_lifs": "ip_interface", "get_lif": "ip_interface",
    "list_aggregates": "aggregate", "get_aggregate": "aggregate",
    "list_volumes": "volume", "get_volume": "volume", "get_file": "file_info",
    "list_all_snapshots": "snapshot", "list_snapshots": "snapshot", "get_snapshot": "snapshot",
    "list_luns": "lun", "get_lun": "lun",
    "list_relationships": "snapmirror_relationship", "get_relationship": "snapmirror_relationship",
    "list_transfers": "snapmirror_transfer", "get_transfer": "snapmirror_transfer",
    "list_policies": "snapmirror_policy", "get_policy": "snapmirror_policy",
    "list_cgs": "consistency_group", "get_cg": "consistency_group",
    "list_cg_snapshots": "consistency_group_snapshot", "get_cg_snapshot": "consistency_group_snapshot",
    "list_accounts": "account", "get_account": "account", "list_roles": "role", "get_role": "role",
    "list_role_privileges": "role_privilege",
}


class RestApi(StorageHandlers, ProtectionHandlers, SecurityHandlers):
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
            ("GET", "/api/cluster/software", self.get_software, "read"),
            ("GET", "/api/cluster/nodes", self.list_nodes, "read"),
            ("GET", f"/api/cluster/nodes/{U}", self.get_node, "read"),
            ("GET", "/api/cluster/jobs", self.list_jobs, "read"),
            ("GET", f"/api/cluster/jobs/{U}", self.get_job, "read"),
            ("GET", "/api/svm/svms", self.list_svms, "read"),
            ("GET", f"/api/svm/svms/{U}", self.get_svm, "read"),
            ("GET", "/api/cluster/peers", self.list_cluster_peers, "read"),
            ("GET", f"/api/cluster/peers/{U}", self.get_cluster_peer, "read"),
            ("GET", "/api/svm/peers", self.list_svm_peers, "read"),
            ("GET", f"/api/svm/peers/{U}", self.get_svm_peer, "read"),
            ("GET", "/api/storage/aggregates", self.list_aggregates, "read"),
            ("GET", f"/api/storage/aggregates/{U}", self.get_aggregate, "read"),
            ("GET", "/api/network/ip/interfaces", self.list_lifs, "read"),
            ("GET", f"/api/network/ip/interfaces/{U}", self.get_lif, "read"),
            ("GET", "/api/storage/volumes", self.list_volumes, "read"),
            ("GET", r"/api/storage/volumes/\*/snapshots", self.list_all_snapshots, "read"),
            ("GET", f"/api/storage/volumes/{U}", self.get_volume, "read"),
            ("PATCH", f"/api/storage/volumes/{U}", self.patch_volume, "read"),  # action checked inside
            ("GET", f"/api/storage/volumes/{U}/files/(.+)", self.get_file, "read"),
            ("GET", f"/api/storage/volumes/{U}/snapshots", self.list_snapshots, "read"),
            ("POST", f"/api/storage/volumes/{U}/snapshots", self.post_snapshot, "snapshot_create"),
            ("DELETE", f"/api/storage/volumes/{U}/snapshots", self.delete_snapshots, "snapshot_delete"),
            ("GET", f"/api/storage/volumes/{U}/snapshots/{U}", self.get_snapshot, "read"),
            ("PATCH", f"/api/storage/volumes/{U}/snapshots/{U}", self.patch_snapshot, "snapshot_modify"),
            ("DELETE", f"/api/storage/volumes/{U}/snapshots/{U}", self.delete_snapshot, "snapshot_delete"),
            ("GET", "/api/storage/luns", self.list_luns, "read"),
            ("GET", f"/api/storage/luns/{U}", self.get_lun, "read"),
            ("PATCH", f"/api/storage/luns/{U}", self.patch_lun, "restore"),
            ("GET", "/api/snapmirror/relationships", self.list_relationships, "read"),
            ("POST", "/api/snapmirror/relationships", self.post_relationship, "snapmirror_restore"),
            ("GET", f"/api/snapmirror/relationships/{U}", self.get_relationship, "read"),
            ("DELETE", f"/api/snapmirror/relationships/{U}", self.delete_relationship, "snapmirror_restore"),
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
            ("PATCH", f"/api/application/consistency-groups/{U}/snapshots/{U}", self.patch_cg_snapshot,
             "snapshot_create"),
            ("DELETE", f"/api/application/consistency-groups/{U}/snapshots/{U}", self.delete_cg_snapshot,
             "snapshot_delete"),
            ("POST", "/api/private/cli/volume/snapshot/restore-file", self.cli_restore_file, "restore"),
            ("GET", "/api/security/accounts", self.list_accounts, "security_read"),
            ("GET", f"/api/security/accounts/{U}/{U}", self.get_account, "security_read"),
            ("GET", "/api/security/roles", self.list_roles, "security_read"),
            ("GET", f"/api/security/roles/{U}/{U}", self.get_role, "security_read"),
            ("GET", f"/api/security/roles/{U}/{U}/privileges", self.list_role_privileges, "security_read"),
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
            if req.method == "GET" and handler.__name__ in RESOURCE_OF:
                check_fields(RESOURCE_OF[handler.__name__], req.query.get("fields"))
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
