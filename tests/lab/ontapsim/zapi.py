"""ZAPI (ONTAPI) at /servlets/netapp.servlets.admin.XMLrequest_filer, as netapp-lib speaks it:
<netapp vfiler=…><api>…</api></netapp> in, <netapp><results status=… errno reason>…</results> out.
Dispatch, SVM tunnelling rules and RBAC live here; the handlers in zapi_info / zapi_snapshots."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Callable

from .auth import Auth
from .config import ROLE_ACTIONS
from .errors import ERROR_TABLE, SimError
from .faults import Knobs
from .ops import Ops
from .state import State
from .zapi_security import SecurityZapi
from .zapi_snapshots import SnapshotHandlers
from .zapi_xml import ZapiError, local_name, reply_failure, reply_success, strip_ns

ZAPI_PATH = "/servlets/netapp.servlets.admin.XMLrequest_filer"
MISSING_VSERVER = "Vserver API missing vserver parameter."


class ZapiApi(SnapshotHandlers, SecurityZapi):
    def __init__(self, state: State, ops: Ops, knobs: Knobs, auth: Auth) -> None:
        self.st = state
        self.ops = ops
        self.knobs = knobs
        self.auth = auth
        # api -> (handler, action, scope): scope "cluster" = not on a data vserver,
        # "vserver" = needs the vfiler attribute, "any" = both (tunnelled: that SVM only).
        self.apis: dict[str, tuple[Callable[..., ET.Element | None], str, str]] = {
            "system-get-version": (self.system_get_version, "read", "any"),
            "system-get-ontapi-version": (self.system_get_ontapi_version, "read", "any"),
            "cluster-identity-get": (self.cluster_identity_get, "read", "cluster"),
            "system-node-get-iter": (self.system_node_get_iter, "read", "cluster"),
            "cluster-node-get-iter": (self.cluster_node_get_iter, "read", "cluster"),
            "aggr-get-iter": (self.aggr_get_iter, "read", "cluster"),
            "vserver-peer-get-iter": (self.vserver_peer_get_iter, "read", "any"),
            "sis-get-iter": (self.sis_get_iter, "read", "any"),
            "vserver-get-iter": (self.vserver_get_iter, "read", "any"),
            "volume-get-iter": (self.volume_get_iter, "read", "any"),
            "snapshot-get-iter": (self.snapshot_get_iter, "read", "any"),
            "lun-get-iter": (self.lun_get_iter, "read", "any"),
            "net-interface-get-iter": (self.net_interface_get_iter, "read", "any"),
            "snapmirror-get-iter": (self.snapmirror_get_iter, "read", "any"),
            "snapmirror-get-destination-iter": (self.snapmirror_get_destination_iter, "read", "any"),
            "snapmirror-policy-get-iter": (self.snapmirror_policy_get_iter, "read", "any"),
            "snapshot-create": (self.snapshot_create, "snapshot_create", "vserver"),
            "snapshot-multicreate": (self.snapshot_multicreate, "snapshot_create", "vserver"),
            "snapshot-delete": (self.snapshot_delete, "snapshot_delete", "vserver"),
            "snapshot-rename": (self.snapshot_rename, "snapshot_modify", "vserver"),
            "volume-size": (self.volume_size, "admin", "vserver"),
            "snapshot-modify-iter": (self.snapshot_modify_iter, "snapshot_modify", "any"),
            "snapshot-restore-file": (self.snapshot_restore_file, "restore", "vserver"),
            "snapshot-restore-volume": (self.snapshot_restore_volume, "restore", "vserver"),
            "snapshot-restore-file-info": (self.snapshot_restore_file_info, "read", "any"),
            "cg-start": (self.cg_start, "snapshot_create", "vserver"),
            "cg-commit": (self.cg_commit, "snapshot_create", "vserver"),
            "snapmirror-update": (self.snapmirror_update, "snapmirror_update", "any"),
            "lun-get-serial-number": (self.lun_get_serial_number, "read", "vserver"),
            "file-get-file-info": (self.file_get_file_info, "read", "vserver"),
            "security-login-get-iter": (self.security_login_get_iter, "security_read", "cluster"),
            "security-login-role-get-iter": (self.security_login_role_get_iter, "security_read", "cluster"),
        }

    # -- envelope ----------------------------------------------------------------------------
    @staticmethod
    def peek(raw: bytes) -> tuple[str | None, str | None]:
        """(API name, vfiler) of a request, for the call log and fault matching."""
        try:
            root = ET.fromstring(raw)
        except ET.ParseError:
            return None, None
        api = next(iter(root), None)
        return (local_name(api.tag) if api is not None else None), root.get("vfiler")

    @staticmethod
    def failure(errno: str, reason: str) -> tuple[bytes, str, str]:
        """(body, zapi status, errno) of a failed call."""
        return reply_failure(errno, reason), "failed", str(errno)

    @staticmethod
    def success(results: ET.Element | None) -> tuple[bytes, str, None]:
        return reply_success(results), "passed", None

    def handle(self, raw: bytes, user: dict[str, Any]) -> tuple[bytes, str, str | None]:
        try:
            return self.success(self._call(raw, user))
        except ZapiError as exc:
            return self.failure(exc.errno, exc.reason)
        except SimError as exc:
            return self.failure(ERROR_TABLE[exc.kind][2], exc.message)
        except (ValueError, TypeError) as exc:
            return self.failure("13115", f"Invalid input: {exc}")

    def _call(self, raw: bytes, user: dict[str, Any]) -> ET.Element | None:
        if not self.st.cfg["options"].get("zapi", True):
            raise ZapiError("13005", "ONTAPI is disabled on this cluster (system services web ontapi).")
        try:
            root = strip_ns(ET.fromstring(raw))
        except ET.ParseError as exc:
            raise ZapiError("13001", f"Invalid XML request: {exc}") from None
        if root.tag != "netapp" or not len(root):
            raise ZapiError("13001", "Invalid request: expected <netapp><api/></netapp>.")
        api = root[0]
        vfiler = root.get("vfiler") or None
        entry = self.apis.get(api.tag)
        if entry is None:
            where = f" on data vserver {vfiler}" if vfiler else ""
            raise ZapiError("13005", f"Unable to find API: {api.tag}{where}")
        handler, action, scope = entry
        svm: dict[str, Any] | None = None
        if vfiler:
            with self.st.lock:
                try:
                    svm = self.st.find_svm(vfiler)
                except SimError:
                    raise ZapiError("15698", "Specified vserver not found") from None
            if scope == "cluster":
                raise ZapiError("13005", f"Unable to find API: {api.tag} on data vserver {vfiler}")
        elif scope == "vserver":
            raise ZapiError("13001", MISSING_VSERVER)
        # "admin": a change the simulator has no action for (volume-size): every action of the admin role.
        needed = ROLE_ACTIONS["admin"] if action == "admin" else {action}
        if not all(self.auth.allowed(user, a) for a in needed):
            if action in ("read", "security_read"):
                raise ZapiError("13003", f"Insufficient privileges: user '{user['name']}' does not have read "
                                         "access to this resource")
            raise ZapiError("13003", f"Insufficient privileges: user '{user['name']}' does not have write access "
                                     "to this resource")
        return handler(api, svm)
