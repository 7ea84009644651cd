# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ONTAP interface over ZAPI (ONTAPI) through netapp-lib, for older clusters.

TLS is set per session: NaServer is subclassed so its urllib opener gets an SSL context with the CA
bundle / client certificate; ssl's process-wide default context is never patched. Basic auth is sent
pre-emptively, and urllib's basic-auth handler still answers a 401 challenge.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import base64
import re
import time
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.urls import make_context

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError, redact
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_http import USER_AGENT, url_host
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_interface import (
    Ontap,
    duration_to_seconds,
    iso_to_epoch,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_records import (
    Endpoint,
    FileInfo,
    InterfaceRecord,
    LunRecord,
    RelationshipRecord,
    SnapshotRecord,
    SvmRecord,
    VolumeRecord,
    VolumeRef,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_set import ZAPI_CG_TIMEOUT, SnapshotSetPlan
from ansible_collections.kvmsnap.core.plugins.module_utils._retry import retry

try:
    from netapp_lib.api.zapi import zapi as _zapi
    HAS_NETAPP_LIB = True
    _NaServerBase: Any = _zapi.NaServer
except ImportError:
    HAS_NETAPP_LIB = False
    _zapi = None
    _NaServerBase = object

TRANSIENT_ERRNOS = ("65541", "65552", "65562")
FILE_NOT_FOUND_ERRNOS = ("13113",)  # EFILENOTFOUND


class KvmsnapNaServer(_NaServerBase):
    """NaServer with a per-session TLS context, pre-emptive basic auth and client-certificate auth."""

    def __init__(self, host: str, port: int, username: Optional[str], password: Optional[str],
                 ssl_context: Any, timeout: int, module_name: str = ""):
        super().__init__(url_host(host), server_type="FILER", transport_type="HTTPS", style="basic_auth",
                         username=username or "", password=password or "")
        self.set_port(port)
        self.set_api_version(1, 110)
        self.set_timeout(timeout)
        self._kv_context = ssl_context
        self._kv_headers = {"X-Dot-Client-App": "%s/%s" % (USER_AGENT, module_name or "module")}
        if username and password is not None:
            token = base64.b64encode(("%s:%s" % (username, password)).encode("utf-8")).decode("ascii")
            self._kv_headers["Authorization"] = "Basic %s" % token
        self._kv_user = username
        self._kv_password = password
        self._opener: Optional[urllib.request.OpenerDirector] = None
        self._refresh_conn = False

    def _build_opener(self) -> None:
        handlers: List[Any] = [urllib.request.HTTPSHandler(context=self._kv_context)]
        if self._kv_user:
            manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
            manager.add_password(None, self._get_url(), self._kv_user, self._kv_password or "")
            handlers.append(urllib.request.HTTPBasicAuthHandler(manager))
        self._opener = urllib.request.build_opener(*handlers)
        self._refresh_conn = False

    def _create_request(self, na_element: Any, enable_tunneling: bool = False) -> Any:
        request, element = super()._create_request(na_element, enable_tunneling)
        for key, value in self._kv_headers.items():
            request.add_header(key, value)
        return request, element


def _el(name: str, value: Any = None) -> Any:
    """Build an NaElement from a dict/list/scalar: lists repeat elements, dicts nest, bools are true/false."""
    elem = _zapi.NaElement(name)
    if isinstance(value, dict):
        for key, sub in value.items():
            if sub is None:
                continue
            if isinstance(sub, list):
                holder = _zapi.NaElement(key)
                for item in sub:
                    if isinstance(item, tuple):
                        holder.add_child_elem(_el(item[0], item[1]))
                    else:
                        holder.add_child_elem(_el(next(iter(item)), next(iter(item.values()))) if isinstance(item, dict)
                                              else _el("item", item))
                elem.add_child_elem(holder)
            else:
                elem.add_child_elem(_el(key, sub))
    elif value is not None:
        elem.set_content("true" if value is True else "false" if value is False else str(value))
    return elem


def _text(elem: Any, *path: str) -> Optional[str]:
    for name in path:
        if elem is None:
            return None
        elem = elem.get_child_by_name(name)
    if elem is None:
        return None
    content = elem.get_content()
    return content if content not in (None, "") else None


def _children(elem: Any, *path: str) -> List[Any]:
    for name in path:
        if elem is None:
            return []
        elem = elem.get_child_by_name(name)
    return elem.get_children() if elem is not None else []


class OntapZapi(Ontap):
    transport = "zapi"

    def __init__(self, params: Dict[str, Any], module_name: str = ""):
        super().__init__(params, module_name)
        if not HAS_NETAPP_LIB:
            raise OntapError(missing_required_lib("netapp-lib", reason="for transport zapi"),
                             operation="connect over ZAPI", hostname=self.hostname,
                             hint="Install it where the module runs (pip install netapp-lib), or use transport: rest.")
        use_cert = bool(params.get("cert_file"))
        context = make_context(cafile=params.get("ca_path"), validate_certs=params.get("validate_certs", True),
                               client_cert=params.get("cert_file"), client_key=params.get("key_file"))
        self._secrets = [params.get("password")] if params.get("password") else []
        self.server = KvmsnapNaServer(params["hostname"], params.get("port") or 443,
                                      None if use_cert else params.get("username"),
                                      None if use_cert else params.get("password"), context, self.timeout, module_name)
        self.calls = 0

    # ---- plumbing ----------------------------------------------------------------------------------
    def _error(self, exc: Any, operation: str, api: str = "") -> OntapError:
        code = getattr(exc, "code", None)
        message = redact(str(getattr(exc, "message", exc)), self._secrets)
        status = code if isinstance(code, int) else None
        if isinstance(code, str) and code.isdigit() and len(code) == 3 and code[0] in "45":
            status = int(code)
        transient = False
        text = message
        if code == "Unable to connect":
            transient = True
            text = "connection to %s:%s refused" % (self.hostname, self.params.get("port") or 443)
        elif code in ("URL error", "Unexpected error"):
            lowered = message.lower()
            if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
                return OntapError("TLS certificate verification failed: %s" % message, operation=operation,
                                  hostname=self.hostname,
                                  hint="Set ca_path to the CA bundle that signed the cluster certificate (or, in a lab "
                                       "only, validate_certs: false).")
            transient = any(w in lowered for w in ("reset", "refused", "timed out", "remote end closed", "broken pipe"))
        elif status is not None and status >= 500:
            transient = True
        elif str(code) in TRANSIENT_ERRNOS:
            transient = True
        if status is not None:
            code = None
        return OntapError(text, status=status, code=code if not isinstance(code, int) and code not in (
            "URL error", "Unexpected error", "Unable to connect") else None, operation=operation,
            hostname=self.hostname, transient=transient, api=api,
            username="" if self.params.get("cert_file") else str(self.params.get("username") or ""))

    def invoke(self, api: str, args: Optional[Dict[str, Any]] = None, svm: Optional[str] = None,
               operation: Optional[str] = None, safe_to_retry: bool = True) -> Any:
        """Invoke one API (tunnelled to SVM when given); retries transient failures when safe."""
        operation = operation or api

        def once(_attempt: int) -> Any:
            elem = _el(api, args or {})
            self.server.set_vserver(svm or None)
            self.calls += 1
            try:
                return self.server.invoke_successfully(elem, enable_tunneling=bool(svm))
            except _zapi.NaApiError as exc:
                raise self._error(exc, operation, api) from None
            except Exception as exc:  # pylint: disable=broad-except
                raise OntapError("unexpected answer: %s" % redact(repr(exc), self._secrets), operation=operation,
                                 hostname=self.hostname) from None

        def worth_retrying(err: Exception) -> bool:
            if not isinstance(err, OntapError) or not err.is_transient:
                return False
            not_executed = "temporarily locked" in err.message.lower() or "refused" in err.message
            return bool(safe_to_retry or not_executed)
        return retry(once, self.retries, worth_retrying)

    def iterate(self, api: str, info: str, query: Optional[Dict[str, Any]] = None, operation: Optional[str] = None,
                svm: Optional[str] = None) -> List[Any]:
        records: List[Any] = []
        tag = None
        for _page in range(10000):
            args: Dict[str, Any] = {"max-records": 200}
            if query:
                args["query"] = {info: query}
            if tag:
                args["tag"] = tag
            res = self.invoke(api, args, svm=svm, operation=operation or api)
            records.extend(_children(res, "attributes-list"))
            tag = _text(res, "next-tag")
            if not tag:
                break
        return records

    # ---- cluster -----------------------------------------------------------------------------------
    def version(self) -> Tuple[int, int, int]:
        if self._version is None:
            res = self.invoke("system-get-version", operation="read the ONTAP version (system-get-version)")
            tuple_el = None
            vt = res.get_child_by_name("version-tuple")
            if vt is not None:
                tuple_el = vt.get_child_by_name("system-version-tuple")
            if tuple_el is not None and _text(tuple_el, "generation"):
                self._version = (int(_text(tuple_el, "generation") or 0), int(_text(tuple_el, "major") or 0),
                                 int(_text(tuple_el, "minor") or 0))
            else:
                m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", _text(res, "version") or "")
                if not m:
                    raise OntapError("no version in the answer of system-get-version", hostname=self.hostname)
                self._version = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
        return self._version

    def _login_role(self, user: str) -> Tuple[str, List[dict]]:
        op = "read the login of user %s (security-login-get-iter)" % user
        accounts = self.iterate("security-login-get-iter", "security-login-account-info",
                                {"user-name": user, "application": "ontapi"}, operation=op)
        if not accounts:
            raise self.not_found("no ontapi login %s" % user, op)
        role, vserver = _text(accounts[0], "role-name") or "", _text(accounts[0], "vserver")
        query = {"role-name": role, "vserver": vserver} if vserver else {"role-name": role}
        recs = self.iterate("security-login-role-get-iter", "security-login-role-info", query,
                            operation="read the command directories of role %s (security-login-role-get-iter)" % role)
        return role, [{"command": _text(r, "command-directory-name"), "access": _text(r, "access-level")}
                      for r in recs]

    def list_svms(self) -> List[SvmRecord]:
        recs = self.iterate("vserver-get-iter", "vserver-info", {"vserver-type": "data"}, "list SVMs")
        return [{"name": _text(r, "vserver-name"), "uuid": _text(r, "uuid"), "state": _text(r, "state")} for r in recs]

    def list_volumes(self, svm: Optional[str] = None, name: Optional[str] = None) -> List[VolumeRecord]:
        ident: Dict[str, Any] = {}
        if svm:
            ident["owning-vserver-name"] = svm
        if name:
            ident["name"] = name
        query = {"volume-id-attributes": ident} if ident else None
        recs = self.iterate("volume-get-iter", "volume-attributes", query,
                            "list volumes%s" % (" of SVM %s" % svm if svm else ""))
        out: List[VolumeRecord] = []
        for r in recs:
            vid = r.get_child_by_name("volume-id-attributes")
            size = _text(r, "volume-space-attributes", "size")
            vol_name = _text(vid, "name")
            if not vol_name:
                continue  # no volume without a name: nothing to address it by
            vol: VolumeRecord = {"name": vol_name, "uuid": _text(vid, "instance-uuid"),
                                 "svm": _text(vid, "owning-vserver-name"), "junction_path": _text(vid, "junction-path"),
                                 "size": int(size) if size and size.isdigit() else None,
                                 "state": _text(r, "volume-state-attributes", "state"), "type": _text(vid, "type")}
            if (svm and vol["svm"] != svm) or (name and vol["name"] != name):
                continue
            out.append(vol)
        return out

    def list_ip_interfaces(self) -> List[InterfaceRecord]:
        recs = self.iterate("net-interface-get-iter", "net-interface-info", None, "list IP interfaces")
        out: List[InterfaceRecord] = []
        for r in recs:
            out.append({"name": _text(r, "interface-name"), "address": _text(r, "address"), "svm": _text(r, "vserver"),
                        "services": [c.get_content() for c in _children(r, "data-protocols")]})
        return out

    def list_luns(self, svm: Optional[str] = None, volume: Optional[str] = None) -> List[LunRecord]:
        query: Dict[str, Any] = {}
        if svm:
            query["vserver"] = svm
        if volume:
            query["volume"] = volume
        recs = self.iterate("lun-get-iter", "lun-info", query or None, "list LUNs")
        out: List[LunRecord] = []
        for r in recs:
            size = _text(r, "size")
            lun: LunRecord = {"path": _text(r, "path"), "uuid": _text(r, "uuid"), "serial": _text(r, "serial-number"),
                              "svm": _text(r, "vserver"), "volume": _text(r, "volume"),
                              "size": int(size) if size and size.isdigit() else None}
            if (svm and lun["svm"] != svm) or (volume and lun["volume"] != volume):
                continue
            out.append(lun)
        return out

    # ---- snapshots ---------------------------------------------------------------------------------
    def list_snapshots(self, svm: str, volume: str, name: Optional[str] = None) -> List[SnapshotRecord]:
        query: Dict[str, Any] = {"volume": volume, "vserver": svm}
        if name:
            query["name"] = name
        op = "list snapshots of %s:%s" % (svm, volume)
        recs = self.iterate("snapshot-get-iter", "snapshot-info", query, op)
        if not recs:
            self.get_volume(svm, volume)  # a clear 404 when the volume does not exist
        out: List[SnapshotRecord] = []
        for r in recs:
            if _text(r, "volume") not in (None, volume) or _text(r, "vserver") not in (None, svm):
                continue
            snap_name = _text(r, "name")
            if not snap_name or (name and snap_name != name):
                continue
            owners: List[str] = []
            for own in _children(r, "snapshot-owners-list"):
                owner = _text(own, "owner") or own.get_content()
                if owner:
                    owners.append(owner)
            out.append({"name": snap_name, "uuid": _text(r, "snapshot-instance-uuid"), "volume": volume,
                        "svm": svm, "create_time": iso_to_epoch(_text(r, "access-time")),
                        "comment": _text(r, "comment"), "snapmirror_label": _text(r, "snapmirror-label"),
                        "state": _text(r, "state") or "valid",
                        "busy": (_text(r, "busy") or "false") == "true" or bool(owners), "owners": owners})
        out.sort(key=lambda s: s.get("create_time") or 0)  # stable: keeps ONTAP's creation order within a second
        return out

    def _set_comment(self, svm: str, volume: str, name: str, comment: Optional[str], label: Optional[str]) -> None:
        attrs: Dict[str, Any] = {}
        if comment is not None:
            attrs["comment"] = comment
        if label:
            attrs["snapmirror-label"] = label
        if not attrs:
            return
        self.invoke("snapshot-modify-iter", {"query": {"snapshot-info": {"name": name, "volume": volume, "vserver": svm}},
                                             "attributes": {"snapshot-info": attrs}},
                    operation="set comment of snapshot %s on %s:%s" % (name, svm, volume))

    def _plan_set(self, plan: SnapshotSetPlan) -> None:
        """snapshot-create for one volume, else cg-start (per SVM) / cg-commit; snapshot-multicreate where cg-start is
        missing (13005, decided at the take). Also the REST client's plan where no REST CG fits."""
        for svm, vol in plan.volumes:
            self.get_volume(svm, vol)  # a clear "not found" before anything is quiesced
        plan.method = "single" if len(plan.volumes) == 1 else "cg_start_commit"
        plan.two_phase = plan.method == "cg_start_commit"
        plan.comments_pending = plan.two_phase  # cg-start takes a label but no comment

    def _take_set(self, plan: SnapshotSetPlan) -> None:
        name = plan.name
        if plan.method == "single":
            svm, vol = plan.volumes[0]
            self.invoke("snapshot-create", {"volume": vol, "snapshot": name, "comment": plan.comment,
                                            "snapmirror-label": plan.label}, svm=svm,
                        operation="create snapshot %s on %s:%s" % (name, svm, vol), safe_to_retry=False)
            return
        svms: List[str] = []
        for svm, _vol in plan.volumes:
            if svm not in svms:
                svms.append(svm)
        plan.started = []
        try:
            for svm in svms:
                vols = [v for s, v in plan.volumes if s == svm]
                res = self.invoke("cg-start", {"snapshot": name, "timeout": ZAPI_CG_TIMEOUT,
                                               "snapmirror-label": plan.label,
                                               "volumes": [("volume-name", v) for v in vols]},
                                  svm=svm, operation="cg-start %s on SVM %s (%s)" % (name, svm, ", ".join(vols)),
                                  safe_to_retry=False)
                plan.started.append((svm, _text(res, "cg-id") or ""))
        except OntapError as exc:
            if exc.code != "13005" or plan.started or len(svms) != 1:
                raise
            # no cg-start on this release/vserver: snapshot-multicreate (one phase; takes no comment or label)
            svm = svms[0]
            vols = [v for _s, v in plan.volumes]
            plan.method, plan.two_phase = "multicreate", False
            res = self.invoke("snapshot-multicreate", {"snapshot": name, "cleanup": True,
                                                       "volume-names": [("volume-name", v) for v in vols]},
                              svm=svm, operation="snapshot-multicreate %s on SVM %s" % (name, svm), safe_to_retry=False)
            errors = ["%s: %s" % (_text(e, "name"), _text(e, "reason")) for e in _children(res, "volume-errors")]
            if errors or _text(res, "status") == "false":
                raise OntapError("snapshot-multicreate failed: %s" % "; ".join(errors),
                                 operation="snapshot-multicreate %s" % name, hostname=self.hostname) from exc
            plan.comments_pending = True

    def _commit_set(self, plan: SnapshotSetPlan) -> None:
        for svm, cg_id in plan.started:
            self.invoke("cg-commit", {"cg-id": cg_id}, svm=svm, operation="cg-commit %s on SVM %s" % (plan.name, svm),
                        safe_to_retry=False)

    def delete_snapshot(self, svm: str, volume: str, name: str) -> None:
        op = "delete snapshot %s on %s:%s" % (name, svm, volume)
        try:
            self.invoke("snapshot-delete", {"volume": volume, "snapshot": name}, svm=svm, operation=op)
        except OntapError as exc:
            if exc.code == "13021" or (exc.is_not_found and "snapshot" in exc.message.lower()):
                if not self.get_snapshot(svm, volume, name):
                    raise self.not_found("snapshot %s not found on %s:%s" % (name, svm, volume), op) from None
            raise

    # ---- files in a snapshot ------------------------------------------------------------------------
    def _snapshot_file_info(self, svm: str, volume: str, snapshot: Optional[str], rel: str) -> Optional[FileInfo]:
        where = rel if snapshot is None else ".snapshot/%s/%s" % (snapshot, rel)
        res = self.invoke("file-get-file-info", {"path": "/vol/%s/%s" % (volume, where)},
                          svm=svm, operation="file-get-file-info")
        size = _text(res, "file-info", "file-size")
        return {"name": _text(res, "file-info", "name"), "type": _text(res, "file-info", "file-type"),
                "size": int(size) if size and size.isdigit() else None}

    def _file_missing(self, exc: OntapError) -> bool:
        # EFILENOTFOUND (13113); some releases answer ENOENT-style text instead
        return exc.code in FILE_NOT_FOUND_ERRNOS or "no such file" in exc.message.lower()

    # ---- restore -------------------------------------------------------------------------------------
    def restore_file(self, svm: str, volume: str, snapshot: str, path: str, restore_path: Optional[str] = None) -> str:
        op = "restore %s in %s:%s from snapshot %s" % (path, svm, volume, snapshot)
        # restore-path is a full path in the same volume (/vol/<volume>/...), unlike path, which the volume input
        # makes relative
        full = None
        if restore_path:
            full = restore_path if restore_path.startswith("/vol/") else "/vol/%s/%s" % (volume, restore_path.lstrip("/"))
        self.invoke("snapshot-restore-file", {"volume": volume, "snapshot": snapshot, "path": path,
                                              "restore-path": full}, svm=svm, operation=op)
        self._wait_background_restores(svm, op)
        return "zapi"

    def _wait_background_restores(self, svm: str, operation: str) -> None:
        """snapshot-restore-file returns while ONTAP may still copy the data: wait until no single-file restore
        is in progress, so that nobody starts a VM on a half-restored disk."""
        deadline = time.monotonic() + max(self.timeout, 600)
        delay = 0.05
        while True:
            try:
                res = self.invoke("snapshot-restore-file-info", svm=svm, operation=operation)
            except OntapError as exc:
                if exc.code == "13005":  # this ONTAP cannot tell: nothing to wait for that we could see
                    self.warnings.append("%s: ONTAP has no snapshot-restore-file-info; could not check that the "
                                         "restore finished in the background" % operation)
                    return
                raise
            running = int(_text(res, "sfsr-in-progress") or 0)
            if running <= 0:
                return
            if time.monotonic() > deadline:
                raise OntapError("%d single-file restore(s) still running in the background" % running,
                                 operation=operation, hostname=self.hostname,
                                 hint="The restore goes on inside ONTAP; check 'volume snapshot restore-file show' "
                                      "and start the VM only when it has finished.")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def restore_lun(self, svm: str, volume: str, snapshot: str, lun_path: str) -> str:
        op = "restore LUN %s in %s:%s from snapshot %s" % (lun_path, svm, volume, snapshot)
        prefix = "/vol/%s/" % volume
        if not lun_path.startswith(prefix):
            raise self.error("LUN path %s is not inside volume %s" % (lun_path, volume), op)
        self.invoke("snapshot-restore-file", {"volume": volume, "snapshot": snapshot,
                                              "path": "/" + lun_path[len(prefix):]}, svm=svm, operation=op)
        self._wait_background_restores(svm, op)
        return "zapi"

    def restore_volume(self, svm: str, volume: str, snapshot: str, force: bool = False) -> None:
        self.invoke("snapshot-restore-volume", {"volume": volume, "snapshot": snapshot, "force": bool(force)}, svm=svm,
                    operation="restore volume %s:%s to snapshot %s" % (svm, volume, snapshot))

    # ---- snapmirror ------------------------------------------------------------------------------------
    def _relationship(self, r: Any) -> RelationshipRecord:
        def end(prefix: str) -> Endpoint:
            path = _text(r, "%s-location" % prefix) or ""
            svm, _sep, vol = path.partition(":")
            return {"svm": _text(r, "%s-vserver" % prefix) or svm, "volume": _text(r, "%s-volume" % prefix) or vol or None,
                    "path": path, "cluster": None}
        rtype = _text(r, "relationship-type")
        ptype = _text(r, "policy-type") or ("vault" if rtype == "vault" else "async_mirror")
        healthy = _text(r, "is-healthy")
        return {"uuid": _text(r, "relationship-id") or _text(r, "destination-location"), "source": end("source"),
                "destination": end("destination"), "policy": _text(r, "policy"), "policy_type": ptype,
                "state": _text(r, "mirror-state"), "healthy": None if healthy is None else healthy == "true",
                "unhealthy_reason": _text(r, "unhealthy-reason") or _text(r, "last-transfer-error"),
                "lag_time": duration_to_seconds(_text(r, "lag-time")), "transfer_state": _text(r, "relationship-status"),
                "last_transfer_end": iso_to_epoch(_text(r, "last-transfer-end-timestamp")), "labels": []}

    def _policy_labels(self) -> Dict[str, List[str]]:
        """SnapMirror labels per policy name (best effort: {} when the user may not read policies)."""
        try:
            recs = self.iterate("snapmirror-policy-get-iter", "snapmirror-policy-info", None, "list SnapMirror policies")
        except OntapError:
            return {}
        out: Dict[str, List[str]] = {}
        for r in recs:
            labels = [_text(rule, "snapmirror-label") for rule in _children(r, "snapmirror-policy-rules")]
            out[_text(r, "policy-name") or ""] = [x for x in labels if x and x != "sm_created"]
        return out

    def list_snapmirror(self, source: Optional[List[VolumeRef]] = None) -> List[RelationshipRecord]:
        recs = self.iterate("snapmirror-get-iter", "snapmirror-info", None, "list SnapMirror relationships")
        rels = [self._relationship(r) for r in recs]
        labels = self._policy_labels() if rels else {}
        for rel in rels:
            rel["labels"] = labels.get(rel["policy"] or "", [])
        if source is not None:
            wanted = set("%s:%s" % sv for sv in source)
            rels = [r for r in rels if r["source"]["path"] in wanted]
        return rels

    def update_snapmirror(self, relationship: RelationshipRecord, snapshot: Optional[str] = None, wait: bool = True,
                          timeout: int = 300) -> RelationshipRecord:
        dest = relationship["destination"]["path"]
        op = "update SnapMirror %s -> %s" % (relationship["source"]["path"], dest)
        self.invoke("snapmirror-update", {"destination-location": dest, "source-snapshot": snapshot}, operation=op,
                    safe_to_retry=False)
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            recs = self.iterate("snapmirror-get-iter", "snapmirror-info", {"destination-location": dest}, op)
            if not recs:
                raise self.not_found("relationship with destination %s vanished" % dest, op)
            rel = self._relationship(recs[0])
            if not wait or rel["transfer_state"] in (None, "idle"):
                err = _text(recs[0], "last-transfer-error")
                if wait and err and _text(recs[0], "last-transfer-type") is not None and rel["healthy"] is False:
                    raise OntapError("transfer failed: %s" % err, operation=op, hostname=self.hostname,
                                     hint="Check the relationship with 'snapmirror show -destination-path %s' and run "
                                          "'snapmirror resync' if it is broken." % dest)
                return rel
            if time.monotonic() + delay > deadline:
                raise OntapError("transfer still %s after %d s" % (rel["transfer_state"], timeout), operation=op,
                                 hostname=self.hostname,
                                 hint="The transfer continues on the controller; raise wait_timeout or check later.")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
