# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ONTAP interface over REST (ansible.module_utils.urls, no extra library).

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import math
import re
import time
import uuid as uuidlib
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_http import RestSession
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_interface import (
    CG_API,
    NATIVE_FILE_RESTORE,
    TEMP_CG_LIFETIME,
    TEMP_CG_PREFIX,
    Ontap,
    duration_to_seconds,
    is_temp_cg_name,
    iso_to_epoch,
    temp_cg_name,
    temp_cg_until,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_records import (
    Endpoint,
    FileInfo,
    InterfaceRecord,
    LunRecord,
    RelationshipRecord,
    SnapshotRecord,
    SvmRecord,
    TempCgRecord,
    VolumeRecord,
    VolumeRef,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_set import TWO_PHASE_TIMEOUT, SnapshotSetPlan
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_zapi import HAS_NETAPP_LIB, OntapZapi

RETURN_TIMEOUT_MAX = 120  # ONTAP's upper bound for return_timeout
# Two-phase CG snapshots (action=start, then commit) came with a 2022 REST release (9.12.1 assumed); a release
# that refuses the action argument gets the one-phase CG snapshot instead.
CG_TWO_PHASE = (9, 12, 1)
SNAP_FIELDS = "name,uuid,create_time,comment,snapmirror_label,state,owners"
VOL_FIELDS = "name,uuid,svm.name,nas.path,space.size,state,type"
SM_FIELDS = ("uuid,source,destination,policy,state,healthy,unhealthy_reason,lag_time,transfer")


def _peer_held(rec: dict) -> bool:
    """A relationship record whose destination names another cluster (listed with list_destinations_only)."""
    return bool(((rec.get("destination") or {}).get("cluster") or {}).get("name"))


class OntapRest(Ontap):
    transport = "rest"

    def __init__(self, params: Dict[str, Any], module_name: str = ""):
        super().__init__(params, module_name)
        self.session = RestSession(
            params["hostname"], params.get("port"), params.get("username"), params.get("password"),
            params.get("cert_file"), params.get("key_file"), params.get("validate_certs", True),
            params.get("ca_path"), self.timeout, module_name, self.retries)

    # ---- plumbing --------------------------------------------------------------------------------
    def _send(self, method: str, path: str, operation: str, query: Optional[Dict[str, Any]] = None,
              body: Any = None, safe_to_retry: Optional[bool] = None, timeout: Optional[int] = None,
              wait: bool = True) -> Any:
        """A mutating call; waits for the job(s) it starts (unless WAIT is false). Returns the response body.

        Waiting: ONTAP is asked to hold the answer until its job ends (return_timeout, at most 120 s and never past
        the call deadline); it answers 200/201 with the job ended, or its error. Only a 202 (the job still runs
        after that) is polled."""
        def run() -> Any:
            q = dict(query or {})
            hold = self._return_timeout(timeout) if wait else 0
            if hold:
                q["return_timeout"] = hold
            status, payload, _headers = self.session.request(method, path, q, body, safe_to_retry,
                                                             read_timeout=hold + self.timeout if hold else None)
            if wait and status == 202 and isinstance(payload, dict):
                jobs = []
                if isinstance(payload.get("job"), dict):
                    jobs.append(payload["job"])
                jobs.extend(j for j in payload.get("jobs") or [] if isinstance(j, dict))
                for job in jobs:
                    self.wait_job(job, operation, timeout)
            return payload
        return self.call(operation, run)

    def _return_timeout(self, timeout: Optional[int]) -> int:
        """Seconds ONTAP may hold an answer: the call's timeout, bounded by the call deadline and by ONTAP's 120."""
        budget = float(timeout or self.timeout)
        if self.call_deadline is not None:
            budget = min(budget, self.call_deadline - time.monotonic())
        return int(max(1, min(RETURN_TIMEOUT_MAX, math.floor(budget))))

    def wait_job(self, job: dict, operation: str, timeout: Optional[int] = None) -> dict:
        """Poll /api/cluster/jobs/{uuid} at once, then every 0.1 s growing to 1 s, up to the timeout."""
        job_uuid = job.get("uuid")
        if not job_uuid:
            href = ((job.get("_links") or {}).get("self") or {}).get("href", "")
            job_uuid = href.rstrip("/").rsplit("/", 1)[-1]
        deadline = time.monotonic() + (timeout or self.timeout)
        delay = 0.1
        errors = 0
        while True:
            try:
                info = self.session.get("/api/cluster/jobs/%s" % job_uuid)  # all fields: `error` is 9.11+ only
                errors = 0
            except OntapError as exc:
                errors += 1
                if errors >= 3 or not exc.is_transient:
                    raise exc.with_context(operation, self.hostname) from None
                info = {}
            state = info.get("state")
            if state == "success":
                return info
            if state in ("failure", "error"):
                err = info.get("error") if isinstance(info.get("error"), dict) else {}
                code = err.get("code") or info.get("code")
                message = info.get("message") or err.get("message") or "job failed"
                raise OntapError("job %s reported: %s" % (job_uuid, message), code=code if code not in (0, "0") else None,
                                 operation=operation, hostname=self.hostname)
            if time.monotonic() + delay > deadline:
                raise OntapError("job %s still %s after %d s" % (job_uuid, state or "unknown", timeout or self.timeout),
                                 operation=operation, hostname=self.hostname,
                                 hint="The operation may still complete on the controller; check it, then raise "
                                      "the timeout option.")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    # ---- cluster -----------------------------------------------------------------------------------
    def version(self) -> Tuple[int, int, int]:
        if self._version is None:
            op = "read the ONTAP version (GET /api/cluster)"

            def read() -> Tuple[int, int, int]:
                try:
                    ver = self.session.get("/api/cluster", fields="version").get("version") or {}
                except OntapError as exc:
                    if not exc.is_forbidden:
                        raise
                    recs = self.session.get_records("/api/cluster/nodes", fields="version")
                    ver = (recs[0].get("version") if recs else None) or {}
                if "generation" not in ver:
                    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", ver.get("full", ""))
                    if not m:
                        raise OntapError("no version in the answer of /api/cluster", hostname=self.hostname)
                    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
                return (int(ver["generation"]), int(ver["major"]), int(ver.get("minor", 0)))
            self._version = self.call(op, read)
        return self._version

    def _login_role(self, user: str) -> Tuple[str, List[dict]]:
        op = "read the account of user %s (GET /api/security/accounts)" % user
        accounts = self.call(op, lambda: self.session.get_records("/api/security/accounts", name=user,
                                                                  fields="role,owner"))
        if not accounts:
            raise self.not_found("no account %s" % user, op)
        role = (accounts[0].get("role") or {}).get("name") or ""
        owner = (accounts[0].get("owner") or {}).get("uuid") or ""
        path = "/api/security/roles/%s/%s/privileges" % (quote(owner, safe=""), quote(role, safe=""))
        recs = self.call("read the privileges of role %s (GET %s)" % (role, path),
                         lambda: self.session.get_records(path, fields="access"))
        return role, [{"path": r.get("path"), "access": r.get("access")} for r in recs]

    def list_svms(self) -> List[SvmRecord]:
        recs = self.call("list SVMs", lambda: self.session.get_records("/api/svm/svms", fields="name,uuid,state"))
        return [{"name": r.get("name"), "uuid": r.get("uuid"), "state": r.get("state")} for r in recs]

    def list_volumes(self, svm: Optional[str] = None, name: Optional[str] = None) -> List[VolumeRecord]:
        query: Dict[str, Any] = {"fields": VOL_FIELDS}
        if svm:
            query["svm.name"] = svm
        if name:
            query["name"] = name
        op = "list volumes%s" % (" of SVM %s" % svm if svm else "")
        recs = self.call(op, lambda: self.session.get_records("/api/storage/volumes", **query))
        out: List[VolumeRecord] = []
        for r in recs:
            vol: VolumeRecord = {"name": r.get("name"), "uuid": r.get("uuid"), "svm": (r.get("svm") or {}).get("name"),
                                 "junction_path": (r.get("nas") or {}).get("path"), "size": (r.get("space") or {}).get("size"),
                                 "state": r.get("state"), "type": r.get("type")}
            if svm and vol["svm"] not in (None, svm):
                continue
            if name and vol["name"] != name:
                continue
            out.append(vol)
            self._volumes[(vol["svm"] or svm or "", vol["name"])] = vol
        return out

    def list_ip_interfaces(self) -> List[InterfaceRecord]:
        recs = self.call("list IP interfaces", lambda: self.session.get_records(
            "/api/network/ip/interfaces", fields="name,ip.address,svm.name,services,scope"))
        return [{"name": r.get("name"), "address": (r.get("ip") or {}).get("address"),
                 "svm": (r.get("svm") or {}).get("name"), "services": r.get("services") or []} for r in recs]

    def list_luns(self, svm: Optional[str] = None, volume: Optional[str] = None) -> List[LunRecord]:
        query: Dict[str, Any] = {"fields": "name,uuid,serial_number,svm.name,location.volume.name,space.size"}
        if svm:
            query["svm.name"] = svm
        if volume:
            query["location.volume.name"] = volume
        recs = self.call("list LUNs", lambda: self.session.get_records("/api/storage/luns", **query))
        out: List[LunRecord] = []
        for r in recs:
            lun: LunRecord = {"path": r.get("name"), "uuid": r.get("uuid"), "serial": r.get("serial_number"),
                              "svm": (r.get("svm") or {}).get("name"),
                              "volume": ((r.get("location") or {}).get("volume") or {}).get("name"),
                              "size": (r.get("space") or {}).get("size")}
            if volume and lun["volume"] is None and lun["path"]:
                lun["volume"] = lun["path"].split("/")[2] if lun["path"].startswith("/vol/") else None
            if (svm and lun["svm"] not in (None, svm)) or (volume and lun["volume"] != volume):
                continue
            out.append(lun)
        return out

    # ---- snapshots ---------------------------------------------------------------------------------
    def list_snapshots(self, svm: str, volume: str, name: Optional[str] = None) -> List[SnapshotRecord]:
        vol = self.get_volume(svm, volume)
        query: Dict[str, Any] = {"fields": SNAP_FIELDS}
        if name:
            query["name"] = name
        op = "list snapshots of %s:%s" % (svm, volume)
        path = "/api/storage/volumes/%s/snapshots" % vol["uuid"]
        try:
            recs = self.call(op, lambda: self.session.get_records(path, **query))
        except OntapError as exc:
            if exc.status != 400:
                raise
            # an older release that does not know a field (owners): ask for the basic ones only
            query["fields"] = "name,uuid,create_time,comment,snapmirror_label"
            recs = self.call(op, lambda: self.session.get_records(path, **query))
        out: List[SnapshotRecord] = []
        for r in recs:
            if name and r.get("name") != name:
                continue
            owners = r.get("owners") or []
            if isinstance(owners, str):
                owners = [owners]
            out.append({"name": r.get("name"), "uuid": r.get("uuid"), "volume": volume, "svm": svm,
                        "create_time": iso_to_epoch(r.get("create_time")), "comment": r.get("comment"),
                        "snapmirror_label": r.get("snapmirror_label"), "state": r.get("state") or "valid",
                        "busy": bool(r.get("busy")) or bool(owners), "owners": list(owners)})
        out.sort(key=lambda s: s.get("create_time") or 0)  # stable: keeps ONTAP's creation order within a second
        return out

    def _snapshot_body(self, name: str, comment: Optional[str], label: Optional[str]) -> dict:
        body: Dict[str, Any] = {"name": name}
        if comment is not None:
            body["comment"] = comment
        if label:
            body["snapmirror_label"] = label
        return body

    def _plan_set(self, plan: SnapshotSetPlan) -> None:
        volumes = plan.volumes
        for svm, vol in volumes:
            self.get_volume(svm, vol)  # 404 with a clear message before anything is created; caches the uuid
        if len(volumes) == 1:
            plan.method = "single"
            return
        svms = sorted(set(s for s, _v in volumes))
        if not self.version_at_least(CG_API):
            return self._plan_without_cg(plan)
        if len(svms) > 1:
            return self._plan_without_cg(plan, why="the volumes are in several SVMs")
        svm, vols = svms[0], [v for _s, v in volumes]
        recs = self._svm_cgs(svm)
        cg = self._find_cg(svm, vols, recs)
        plan.method = "cg"
        if cg is None:
            self._remove_dead_temp_cgs(svm, vols, recs)
            try:
                cg = self._temp_cg(svm, vols)
            except OntapError as exc:
                if exc.code not in ("8", "1") or "consistency group" not in exc.message.lower():
                    raise
                # a volume already belongs to another CG (made by another tool): no REST CG can cover the set
                return self._plan_without_cg(plan, why="a volume is already in another consistency group (%s)"
                                             % exc.message)
            plan.method, plan.temporary_cg = "cg_temporary", True
        plan.cg = dict(cg, svm=svm)
        plan.two_phase = self.version_at_least(CG_TWO_PHASE)

    def _take_set(self, plan: SnapshotSetPlan) -> None:
        if plan.zapi is not None:
            return plan.zapi._take_set(plan)
        body = self._snapshot_body(plan.name, plan.comment, plan.label)
        if plan.method == "single":
            svm, vol = plan.volumes[0]
            self._send("POST", "/api/storage/volumes/%s/snapshots" % self.get_volume(svm, vol)["uuid"],
                       "create snapshot %s on %s:%s" % (plan.name, svm, vol), body=body, safe_to_retry=False)
            return None
        cg = plan.cg or {}
        path = "/api/application/consistency-groups/%s/snapshots" % cg["uuid"]
        op = "create consistency-group snapshot %s of %s on SVM %s" % (plan.name, cg.get("name"), cg.get("svm"))
        if plan.two_phase:
            try:
                self._send("POST", path, op + " (start)", body=body, safe_to_retry=False,
                           query={"action": "start", "action_timeout": TWO_PHASE_TIMEOUT})
                return None
            except OntapError as exc:
                if exc.code != "262179" or exc.target not in (None, "action", "action_timeout"):
                    raise
                # this release has no two-phase CG snapshot: the one-phase one (the VMs wait for all of it)
                plan.two_phase = False
                self.warnings.append("%s: ONTAP refused the two-phase consistency-group snapshot (%s); the one-phase "
                                     "one was used." % (self.hostname, exc.message))
        self._send("POST", path, op, body=body, safe_to_retry=False)
        return None

    def _commit_set(self, plan: SnapshotSetPlan) -> None:
        if plan.zapi is not None:
            return plan.zapi._commit_set(plan)
        if not plan.two_phase:
            return None
        cg = plan.cg or {}
        path = "/api/application/consistency-groups/%s/snapshots" % cg["uuid"]
        op = "commit consistency-group snapshot %s of %s on SVM %s" % (plan.name, cg.get("name"), cg.get("svm"))
        recs = self.call(op, lambda: self.session.get_records(path, name=plan.name, fields="uuid"))
        if not recs or not recs[0].get("uuid"):
            raise OntapError("the started consistency-group snapshot %s is gone before its commit" % plan.name,
                             operation=op, hostname=self.hostname)
        self._send("PATCH", "%s/%s" % (path, recs[0]["uuid"]), op, query={"action": "commit"}, safe_to_retry=False)
        return None

    def _drop_set(self, plan: SnapshotSetPlan) -> None:
        if plan.temporary_cg and plan.cg is not None:
            self._delete_cg(plan.cg)
            plan.cg, plan.temporary_cg = None, False

    def predict_method(self, volumes: List[VolumeRef]) -> str:
        svms = sorted(set(s for s, _v in volumes))
        if len(volumes) == 1:
            return "single"
        if len(svms) > 1 or not self.version_at_least(CG_API):
            return "cg_start_commit"
        return "cg" if self._find_cg(svms[0], [v for _s, v in volumes]) else "cg_temporary"

    def _svm_cgs(self, svm: str) -> List[dict]:
        return self.call("list consistency groups of SVM %s" % svm, lambda: self.session.get_records(
            "/api/application/consistency-groups", **{"svm.name": svm, "fields": "uuid,name,volumes.name"}))

    def _find_cg(self, svm: str, vols: List[str], recs: Optional[List[dict]] = None) -> Optional[dict]:
        """A user's CG with exactly VOLS; never a temporary one (another run's, live or dead: not ours to reuse)."""
        wanted = set(vols)
        for cg in self._svm_cgs(svm) if recs is None else recs:
            if is_temp_cg_name(cg.get("name")):
                continue
            members = set(v.get("name") for v in cg.get("volumes") or [])
            if members == wanted:
                return cg
        return None

    def _remove_dead_temp_cgs(self, svm: str, vols: List[str], recs: List[dict]) -> None:
        """A temporary CG of a dead run (its until passed) holding one of VOLS would block ours: delete it."""
        now = time.time()
        for cg in recs:
            until = temp_cg_until(cg.get("name"))
            if not is_temp_cg_name(cg.get("name")) or (until is not None and until >= now):
                continue
            if not set(v.get("name") for v in cg.get("volumes") or []) & set(vols):
                continue
            temp: TempCgRecord = {"name": cg["name"], "uuid": cg.get("uuid"), "svm": svm,
                                  "volumes": [v.get("name") for v in cg.get("volumes") or []], "until": until}
            self.delete_cg(temp)
            self.warnings.append("%s: removed the temporary consistency group %s on SVM %s left by a run that ended "
                                 "without removing it (its volumes and snapshots stay)." % (self.hostname, temp["name"], svm))

    def list_temp_cgs(self, svm: Optional[str] = None) -> List[TempCgRecord]:
        if not self.version_at_least(CG_API):
            return []
        query: Dict[str, Any] = {"name": TEMP_CG_PREFIX + "*", "fields": "uuid,name,svm.name,volumes.name"}
        if svm:
            query["svm.name"] = svm
        op = "list temporary consistency groups%s" % (" of SVM %s" % svm if svm else "")
        recs = self.call(op, lambda: self.session.get_records("/api/application/consistency-groups", **query))
        out: List[TempCgRecord] = []
        for r in recs:
            name = r.get("name")
            cg_svm = (r.get("svm") or {}).get("name")
            if not is_temp_cg_name(name) or (svm and cg_svm not in (None, svm)):
                continue
            out.append({"name": name, "uuid": r.get("uuid"), "svm": cg_svm or svm,
                        "volumes": [v.get("name") for v in r.get("volumes") or []], "until": temp_cg_until(name)})
        return out

    def delete_cg(self, cg: TempCgRecord) -> None:
        op = "delete consistency group %s on SVM %s (its volumes and snapshots stay)" % (cg.get("name"), cg.get("svm"))
        try:
            self._send("DELETE", "/api/application/consistency-groups/%s" % cg["uuid"], op, safe_to_retry=True)
        except OntapError as exc:
            if not exc.is_not_found:
                raise
            # already gone (another run removed it): the wanted end state

    def _temp_cg(self, svm: str, vols: List[str]) -> dict:
        until = self.temp_cg_until if self.temp_cg_until is not None else int(time.time()) + TEMP_CG_LIFETIME
        cg_name = temp_cg_name(until, uuidlib.uuid4().hex[:12])
        op = "create temporary consistency group %s on SVM %s" % (cg_name, svm)
        body = {"name": cg_name, "svm": {"name": svm},
                "volumes": [{"name": v, "provisioning_options": {"action": "add"}} for v in vols]}
        self._send("POST", "/api/application/consistency-groups", op, body=body, safe_to_retry=False)
        recs = self.call(op, lambda: self.session.get_records("/api/application/consistency-groups",
                                                              **{"svm.name": svm, "name": cg_name, "fields": "uuid,name"}))
        if not recs:
            raise OntapError("consistency group %s not found after it was created" % cg_name, operation=op,
                             hostname=self.hostname)
        return recs[0]

    def _delete_cg(self, cg: dict) -> None:
        op = "delete temporary consistency group %s (the volumes stay)" % cg.get("name")
        try:
            self._send("DELETE", "/api/application/consistency-groups/%s" % cg["uuid"], op, safe_to_retry=True)
        except OntapError as exc:
            self.warnings.append("%s; delete it by hand (its volumes are kept)." % exc)

    def _plan_without_cg(self, plan: SnapshotSetPlan, why: Optional[str] = None) -> None:
        """No REST CG fits (ONTAP < 9.10.1; volumes of several SVMs, as a CG lives in one SVM; a volume already
        in another CG): ZAPI cg-start (per SVM) / cg-commit over the same connection options; comments over REST."""
        ver = ".".join(str(x) for x in self.version())
        warn = why or "ONTAP %s has no consistency-group REST API" % ver
        hint = ("%s; a consistent snapshot of these volumes needs ZAPI (cg-start/cg-commit): install netapp-lib and "
                "allow ONTAPI for this user, or set transport: zapi, or snapshot fewer volumes per task."
                % (why or "ONTAP %s has no consistency-group REST API (9.10.1+)" % ver))
        if not HAS_NETAPP_LIB:
            raise OntapError("no consistent multi-volume snapshot possible over REST", operation=plan.what,
                             hostname=self.hostname, hint=hint)
        params = dict(self.params)
        params["transport"] = "zapi"
        plan.zapi = OntapZapi(params, self.module_name)
        try:
            plan.zapi._plan_set(plan)
        except OntapError as exc:
            if exc.is_auth or exc.is_forbidden or exc.code == "13005":
                exc.message += " (REST fallback to ZAPI)"
                exc.with_hint(hint)
            raise
        plan.set_comment = self._set_comment
        plan.warnings.append("%s: %s, so the snapshot %s is taken with ZAPI cg-start/cg-commit."
                             % (self.hostname, warn, plan.name))

    def _set_comment(self, svm: str, volume: str, name: str, comment: Optional[str], label: Optional[str]) -> None:
        body: Dict[str, Any] = {}
        if comment is not None:
            body["comment"] = comment
        if label:
            body["snapmirror_label"] = label
        snap = self.get_snapshot(svm, volume, name)
        if not body or not snap:
            return
        vol_uuid = self.get_volume(svm, volume)["uuid"]
        self._send("PATCH", "/api/storage/volumes/%s/snapshots/%s" % (vol_uuid, snap["uuid"]),
                   "set comment of snapshot %s on %s:%s" % (name, svm, volume), body=body, safe_to_retry=True)

    def set_snapshot_comment(self, svm: str, volume: str, name: str, comment: str) -> None:
        op = "set comment of snapshot %s on %s:%s" % (name, svm, volume)
        snap = self.get_snapshot(svm, volume, name)  # one read: the PATCH needs its uuid anyway
        if not snap:
            raise self.not_found("snapshot %s not found on %s:%s" % (name, svm, volume), op,
                                 hint="List the snapshots with kvmsnap.core.ontap_snapshot_info.")
        vol_uuid = self.get_volume(svm, volume)["uuid"]
        self._send("PATCH", "/api/storage/volumes/%s/snapshots/%s" % (vol_uuid, snap["uuid"]), op,
                   body={"comment": comment}, safe_to_retry=True)

    def delete_snapshot(self, svm: str, volume: str, name: str) -> None:
        op = "delete snapshot %s on %s:%s" % (name, svm, volume)
        snap = self.get_snapshot(svm, volume, name)
        if not snap:
            raise self.not_found("snapshot %s not found on %s:%s" % (name, svm, volume), op)
        vol_uuid = self.get_volume(svm, volume)["uuid"]
        try:
            self._send("DELETE", "/api/storage/volumes/%s/snapshots/%s" % (vol_uuid, snap["uuid"]), op,
                       safe_to_retry=True)
        except OntapError as exc:
            if exc.is_not_found and not self.get_snapshot(svm, volume, name):
                return
            raise

    # ---- files in a snapshot ------------------------------------------------------------------------
    def _snapshot_file_info(self, svm: str, volume: str, snapshot: Optional[str], rel: str) -> Optional[FileInfo]:
        # GET /api/storage/volumes/{uuid}/files/{path}: the path segment with "." as %2E and "/" as %2F
        vol_uuid = self.get_volume(svm, volume)["uuid"]
        where = rel if snapshot is None else ".snapshot/%s/%s" % (snapshot, rel)
        encoded = quote(where, safe="").replace(".", "%2E")
        payload = self.session.get("/api/storage/volumes/%s/files/%s" % (vol_uuid, encoded),
                                   return_metadata=True, fields="name,type,size,path")
        recs: List[Any] = (payload.get("records") or []) if isinstance(payload, dict) and "records" in payload else [payload]
        rec = next((r for r in recs if isinstance(r, dict)), None)
        if rec is None:
            return None
        size = rec.get("size")
        return {"name": rec.get("name"), "type": rec.get("type"),
                "size": int(size) if isinstance(size, (int, str)) and str(size).isdigit() else None}

    def _snapshot_dir_entries(self, svm: str, volume: str, snapshot: str, rel: str,
                              limit: int) -> Optional[Tuple[List[Dict[str, Any]], bool]]:
        # the same endpoint without return_metadata lists a directory: ".", ".." and its entries, one page of at
        # most max_records (a next link: more than asked for)
        vol_uuid = self.get_volume(svm, volume)["uuid"]
        encoded = quote(".snapshot/%s/%s" % (snapshot, rel), safe="").replace(".", "%2E")
        payload = self.session.get("/api/storage/volumes/%s/files/%s" % (vol_uuid, encoded),
                                   fields="name,type", max_records=limit + 2)
        recs = payload.get("records") if isinstance(payload, dict) else None
        entries = [{"name": r.get("name"), "type": r.get("type")} for r in recs or []
                   if isinstance(r, dict) and r.get("name") not in (".", "..")]
        more = bool((payload.get("_links") or {}).get("next") if isinstance(payload, dict) else None)
        return entries[:limit], more or len(entries) > limit

    def _file_missing(self, exc: OntapError) -> bool:
        return exc.status == 404

    # ---- restore -------------------------------------------------------------------------------------
    def restore_file(self, svm: str, volume: str, snapshot: str, path: str, restore_path: Optional[str] = None) -> str:
        op = "restore %s in %s:%s from snapshot %s" % (path, svm, volume, snapshot)
        vol_uuid = self.get_volume(svm, volume)["uuid"]
        if self.version_at_least(NATIVE_FILE_RESTORE):
            query = {"restore_to.snapshot.name": snapshot, "restore_to.path": path,
                     "restore_to.restore_path": restore_path or path}
            self._send("PATCH", "/api/storage/volumes/%s" % vol_uuid, op, query=query, body={}, safe_to_retry=True)
            return "rest_restore_to"
        body = {"vserver": svm, "volume": volume, "snapshot": snapshot, "path": path}
        if restore_path:
            body["restore_path"] = restore_path
        self._send("POST", "/api/private/cli/volume/snapshot/restore-file", op, body=body, safe_to_retry=True)
        return "cli_passthrough"

    def restore_lun(self, svm: str, volume: str, snapshot: str, lun_path: str) -> str:
        op = "restore LUN %s in %s:%s from snapshot %s" % (lun_path, svm, volume, snapshot)
        prefix = "/vol/%s/" % volume
        if not lun_path.startswith(prefix):
            raise self.error("LUN path %s is not inside volume %s" % (lun_path, volume), op)
        query = {"svm.name": svm, "name": lun_path, "fields": "uuid,name"}
        recs = self.call(op, lambda: self.session.get_records("/api/storage/luns", **query))
        recs = [r for r in recs if r.get("name") == lun_path]
        if not recs:
            raise self.not_found("LUN %s not found on SVM %s" % (lun_path, svm), op)
        source = "/vol/%s/.snapshot/%s/%s" % (volume, snapshot, lun_path[len(prefix):])
        self._send("PATCH", "/api/storage/luns/%s" % recs[0]["uuid"], op, body={"clone": {"source": {"name": source}}},
                   safe_to_retry=True)
        return "rest_lun_clone"

    def restore_volume(self, svm: str, volume: str, snapshot: str, force: bool = False) -> None:
        op = "restore volume %s:%s to snapshot %s" % (svm, volume, snapshot)
        vol_uuid = self.get_volume(svm, volume)["uuid"]
        query: Dict[str, Any] = {"restore_to.snapshot.name": snapshot}
        if force:
            query["restore_to.snapshot.force"] = "true"
        self._send("PATCH", "/api/storage/volumes/%s" % vol_uuid, op, query=query, body={}, safe_to_retry=True,
                   timeout=max(self.timeout, 300))

    # ---- snapmirror ------------------------------------------------------------------------------------
    def _policies(self) -> Dict[Any, dict]:
        try:
            recs = self.session.get_records("/api/snapmirror/policies",
                                            fields="name,uuid,type,retention,create_snapshot_on_source")
        except OntapError:
            return {}
        out = {}
        for r in recs:
            out[r.get("uuid") or r.get("name")] = r
            out[r.get("name")] = r
        return out

    def _relationship(self, r: dict, policies: Dict[Any, dict]) -> RelationshipRecord:
        src = r.get("source") or {}
        dst = r.get("destination") or {}
        pol = r.get("policy") or {}
        full = policies.get(pol.get("uuid")) or policies.get(pol.get("name")) or {}
        labels = [x.get("label") for x in full.get("retention") or [] if x.get("label")]
        ptype = pol.get("type") or full.get("type") or "async"
        if ptype == "async" and full:
            if full.get("create_snapshot_on_source") is False:
                ptype = "vault"
            elif labels:
                ptype = "mirror_vault"

        def split(end: dict) -> Endpoint:
            path = end.get("path") or ""
            svm, _sep, vol = path.partition(":")
            return {"svm": (end.get("svm") or {}).get("name") or svm, "volume": vol or None, "path": path,
                    "cluster": (end.get("cluster") or {}).get("name")}
        transfer = r.get("transfer") or {}
        return {"uuid": r.get("uuid"), "source": split(src), "destination": split(dst), "policy": pol.get("name"),
                "policy_type": ptype, "state": r.get("state"), "healthy": r.get("healthy"),
                "unhealthy_reason": _reason(r.get("unhealthy_reason")), "lag_time": duration_to_seconds(r.get("lag_time")),
                "transfer_state": transfer.get("state"), "last_transfer_end": iso_to_epoch(transfer.get("end_time")),
                "labels": labels}

    def list_snapmirror(self, source: Optional[List[VolumeRef]] = None) -> List[RelationshipRecord]:
        op = "list SnapMirror relationships"
        recs = self.call(op, lambda: self.session.get_records("/api/snapmirror/relationships", fields=SM_FIELDS))
        if source is not None:
            # A relationship lives on its destination cluster: the ones a peer cluster holds for these volumes
            # are only seen here with list_destinations_only (their destination names that cluster).
            seen = set(r.get("uuid") for r in recs)
            held = self.call(op, lambda: self.session.get_records(
                "/api/snapmirror/relationships", fields=SM_FIELDS, list_destinations_only="true"))
            recs = recs + [r for r in held if r.get("uuid") not in seen and _peer_held(r)]
        policies = self._policies() if recs else {}
        rels = [self._relationship(r, policies) for r in recs]
        if source is not None:
            wanted = set("%s:%s" % sv for sv in source)
            rels = [r for r in rels if r["source"]["path"] in wanted]
        return rels

    def update_snapmirror(self, relationship: RelationshipRecord, snapshot: Optional[str] = None, wait: bool = True,
                          timeout: int = 300) -> RelationshipRecord:
        rel_uuid = relationship["uuid"]
        op = "update SnapMirror %s -> %s" % (relationship["source"]["path"], relationship["destination"]["path"])
        body: Dict[str, Any] = {}
        if snapshot:
            body["source_snapshot"] = snapshot
        payload = self._send("POST", "/api/snapmirror/relationships/%s/transfers" % rel_uuid, op,
                             query={"return_records": "true"}, body=body, safe_to_retry=False, timeout=timeout,
                             wait=wait)
        if wait:
            self._wait_transfer(str(rel_uuid), _record_uuid(payload), op, timeout, "transfer", "13303844",
                                "Check the relationship with 'snapmirror show -destination-path %s' and run "
                                "'snapmirror resync' if it is broken." % relationship["destination"]["path"],
                                "The transfer continues on the controller; raise wait_timeout or check later.")
        refreshed = self.call(op, lambda: self.session.get("/api/snapmirror/relationships/%s" % rel_uuid, fields=SM_FIELDS))
        return self._relationship(refreshed, self._policies())

    # ---- SnapMirror restore ----------------------------------------------------------------------------
    def restore_relationships(self, destination: str) -> List[Dict[str, Any]]:
        op = "list restore relationships of %s" % destination
        recs = self.call(op, lambda: self.session.get_records(
            "/api/snapmirror/relationships", **{"destination.path": destination, "fields": "uuid,restore,source,state"}))
        return [{"uuid": r.get("uuid"), "source": (r.get("source") or {}).get("path"), "state": r.get("state")}
                for r in recs if r.get("restore") is True]

    def create_restore_relationship(self, source: str, destination: str) -> str:
        op = "create restore relationship %s -> %s" % (source, destination)
        body = {"source": {"path": source}, "destination": {"path": destination}, "restore": True}
        self._send("POST", "/api/snapmirror/relationships", op, body=body, safe_to_retry=False)
        for rel in self.restore_relationships(destination):
            if rel["source"] == source and rel["uuid"]:
                return str(rel["uuid"])
        raise self.error("ONTAP created no restore relationship %s -> %s" % (source, destination), op)

    def restore_transfer(self, relationship_uuid: str, snapshot: str, files: List[Tuple[str, str]],
                         timeout: int = 300) -> None:
        op = "restore %s from snapshot %s" % (", ".join(f[1] for f in files), snapshot)
        body = {"source_snapshot": snapshot,
                "files": [{"source_path": src, "destination_path": dst} for src, dst in files]}
        path = "/api/snapmirror/relationships/%s/transfers" % relationship_uuid
        payload = self._send("POST", path, op, query={"return_records": "true"}, body=body, safe_to_retry=False,
                             timeout=timeout)
        self._wait_transfer(relationship_uuid, _record_uuid(payload), op, timeout, "restore transfer", "13303845", None,
                            "The transfer continues on the controller; check it with 'snapmirror show -type RST', "
                            "then delete the restore relationship.")

    def _wait_transfer(self, rel_uuid: str, transfer_uuid: Optional[str], op: str, timeout: int, what: str,
                       failed_code: str, failed_hint: Optional[str], late_hint: str) -> None:
        """Poll a transfer (or, without its uuid, the relationship's last one) until it ended; OntapError with
        FAILED_CODE when it failed, and when TIMEOUT s passed."""
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            if transfer_uuid:
                t = self.call(op, lambda: self.session.get(
                    "/api/snapmirror/relationships/%s/transfers/%s" % (rel_uuid, transfer_uuid), fields="state,error_info"))
                state = t.get("state")
                err = (t.get("error_info") or {}).get("message")
            else:
                r = self.call(op, lambda: self.session.get("/api/snapmirror/relationships/%s" % rel_uuid, fields=SM_FIELDS))
                state = (r.get("transfer") or {}).get("state")
                err = _reason(r.get("unhealthy_reason"))
            if state in ("success", None, "idle"):
                return
            if state in ("failed", "aborted", "hard_aborted"):
                raise OntapError("%s %s%s" % (what, state, ": %s" % err if err else ""), code=failed_code,
                                 operation=op, hostname=self.hostname, hint=failed_hint)
            if time.monotonic() + delay > deadline:
                raise OntapError("%s still %s after %d s" % (what, state, timeout), operation=op,
                                 hostname=self.hostname, hint=late_hint)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def delete_relationship(self, relationship_uuid: str) -> None:
        self._send("DELETE", "/api/snapmirror/relationships/%s" % relationship_uuid,
                   "delete restore relationship %s" % relationship_uuid, safe_to_retry=True)


def _record_uuid(payload: Any) -> Optional[str]:
    """The uuid of the record a POST with return_records=true answered (None when it gave none)."""
    recs = payload.get("records") if isinstance(payload, dict) else None
    rec = recs[0] if recs else payload if isinstance(payload, dict) else {}
    return rec.get("uuid") if isinstance(rec, dict) else None


def _reason(value: Any) -> Optional[str]:
    if not value:
        return None
    if isinstance(value, list):
        return "; ".join(str(v.get("message") if isinstance(v, dict) else v) for v in value) or None
    if isinstance(value, dict):
        return value.get("message") or str(value)
    return str(value)
