# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ONTAP interface (see docs/dev/ontap-interface.md): connect() and the shared Ontap base class.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import datetime
import re
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import OptionError, validate_connection
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_privileges import check as check_privileges
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_privileges import describe, requirements
from ansible_collections.kvmsnap.core.plugins.module_utils._retry import backoff_delay

VolumeRef = Tuple[str, str]
CG_API = (9, 10, 1)
NATIVE_FILE_RESTORE = (9, 10, 1)
# Temporary consistency groups: `kvmsnap_tmp_<until epoch>_<hex>`. UNTIL is the epoch second after which the
# run that made it is certainly dead (past its deadline), so a later run may delete a leftover safely.
TEMP_CG_PREFIX = "kvmsnap_tmp_"
TEMP_CG_LIFETIME = 3600
_TEMP_CG_RE = re.compile(r"^kvmsnap_tmp_(?:(\d{9,12})_)?[0-9a-f]+$")


def temp_cg_name(until: int, token: str) -> str:
    return "%s%d_%s" % (TEMP_CG_PREFIX, int(until), token)


def is_temp_cg_name(name: Any) -> bool:
    return isinstance(name, str) and bool(_TEMP_CG_RE.match(name))


def temp_cg_until(name: Any) -> Optional[int]:
    """The `until` epoch of a temporary CG name; None for a name without one (made before it was recorded)."""
    m = _TEMP_CG_RE.match(name) if isinstance(name, str) else None
    return int(m.group(1)) if m and m.group(1) else None


def iso_to_epoch(value: Any) -> Optional[int]:
    """ISO-8601 with offset (REST create_time) or epoch digits (ZAPI access-time) → int epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    text = text.replace("Z", "+00:00")
    m = re.match(r"^(.*[+-]\d\d)(\d\d)$", text)
    if m and ":" not in text[-6:]:
        text = "%s:%s" % (m.group(1), m.group(2))
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return int(when.timestamp())


def epoch_to_iso(value: Optional[int]) -> Optional[str]:
    if value is None:
        return None
    return datetime.datetime.fromtimestamp(int(value), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration_to_seconds(value: Any) -> Optional[int]:
    """REST lag_time `PT8H35M42S` / `P1DT2H` or ZAPI seconds → int seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    m = re.match(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", text)
    if not m:
        return None
    days, hours, minutes, seconds = m.groups()
    return int(int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0))


def snapshot_rel_path(path: str, volume: Optional[str] = None) -> str:
    """PATH relative to its volume root without a leading '/': '/vol/<volume>/lun1' (a LUN path, when VOLUME
    is given or the path starts with /vol/) and '/lun1' both give 'lun1'. No '..' and no empty path."""
    text = str(path or "")
    if text.startswith("/vol/"):
        vol, _sep, rest = text[len("/vol/"):].partition("/")
        if volume is not None and vol != volume:
            raise OptionError("path %s is not inside volume %s" % (path, volume))
        text = rest
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise OptionError("path %r is not a file path inside a volume" % path)
    return "/".join(parts)


class Ontap:
    """Shared logic of both transports. Subclasses implement the _raw methods."""

    transport = "none"

    def __init__(self, params: Dict[str, Any], module_name: str = ""):
        self.params = params
        self.hostname: str = params["hostname"]
        self.module_name = module_name
        self.retries: int = int(params.get("retries", 3))
        self.timeout: int = int(params.get("timeout", 60))
        self._version: Optional[Tuple[int, int, int]] = None
        self.attempted_method: Optional[str] = None  # the method _create_set was using when it failed
        self.warnings: List[str] = []
        self.temp_cg_until: Optional[int] = None  # `until` for the temporary CG of the current create_snapshot_set
        # (svm, volume) -> record: a fence asks for the same volumes several times
        self._volumes: Dict[Tuple[str, str], dict] = {}

    # ---- helpers -------------------------------------------------------------------------------
    def error(self, message: str, operation: str, status: Optional[int] = None, code: Any = None,
              hint: Optional[str] = None) -> OntapError:
        return OntapError(message, status=status, code=code, operation=operation, hostname=self.hostname, hint=hint)

    def not_found(self, message: str, operation: str, hint: Optional[str] = None) -> OntapError:
        return self.error(message, operation, status=404, code="4", hint=hint)

    def call(self, operation: str, fn: Callable[[], Any]) -> Any:
        """Run FN, adding operation and hostname to any OntapError."""
        try:
            return fn()
        except OntapError as exc:
            raise exc.with_context(operation, self.hostname) from None

    def backoff(self, attempt: int) -> None:
        time.sleep(backoff_delay(attempt))

    def version_at_least(self, wanted: Tuple[int, int, int]) -> bool:
        return tuple(self.version()) >= tuple(wanted)

    def version(self) -> Tuple[int, int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def list_volumes(self, svm: Optional[str] = None, name: Optional[str] = None) -> List[dict]:  # pragma: no cover
        raise NotImplementedError

    def get_volume(self, svm: str, name: str) -> dict:
        key = (svm, name)
        if key not in self._volumes:
            found = self.list_volumes(svm, name)
            if not found:
                raise self.not_found("volume %s not found on SVM %s" % (name, svm), "look up volume %s:%s" % (svm, name),
                                     hint="Check the volume and svm options (svm:volume) for this controller.")
            self._volumes[key] = found[0]
        return self._volumes[key]

    def list_snapshots(self, svm: str, volume: str, name: Optional[str] = None) -> List[dict]:  # pragma: no cover
        raise NotImplementedError

    def delete_snapshot(self, svm: str, volume: str, name: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def _create_set(self, volumes: List[VolumeRef], name: str, comment: Optional[str],
                    snapmirror_label: Optional[str]) -> str:  # pragma: no cover
        raise NotImplementedError

    def _set_comment(self, svm: str, volume: str, name: str, comment: Optional[str],
                     label: Optional[str]) -> None:  # pragma: no cover
        raise NotImplementedError

    def set_snapshot_comment(self, svm: str, volume: str, name: str, comment: str) -> None:
        """Replace the comment of snapshot NAME on SVM:VOLUME (404 OntapError when it does not exist)."""
        op = "set comment of snapshot %s on %s:%s" % (name, svm, volume)
        if not self.call(op, lambda: self.get_snapshot(svm, volume, name)):
            raise self.not_found("snapshot %s not found on %s:%s" % (name, svm, volume), op,
                                 hint="List the snapshots with kvmsnap.core.ontap_snapshot_info.")
        self._set_comment(svm, volume, name, comment, None)

    def snapshot_file_info(self, svm: str, volume: str, snapshot: str, path: str) -> Optional[dict]:
        """{name, type, size} of PATH (relative to the volume root) inside snapshot SNAPSHOT of SVM:VOLUME, as
        ONTAP reports it (type: file, directory, lun, symlink, ...); None when the path is not in the snapshot.
        Other failures (volume unknown, no rights) raise OntapError."""
        rel = snapshot_rel_path(path)
        op = "look up %s in snapshot %s of %s:%s" % (rel, snapshot, svm, volume)
        try:
            return self.call(op, lambda: self._snapshot_file_info(svm, volume, snapshot, rel))
        except OntapError as exc:
            if self._file_missing(exc):
                return None
            raise

    def _snapshot_file_info(self, svm: str, volume: str, snapshot: str, rel: str) -> Optional[dict]:
        raise NotImplementedError  # pragma: no cover

    def _file_missing(self, exc: OntapError) -> bool:  # pragma: no cover - per transport
        return exc.is_not_found

    def list_temp_cgs(self, svm: Optional[str] = None) -> List[dict]:
        """Temporary consistency groups (`kvmsnap_tmp_*`) as {name, uuid, svm, volumes, until}.

        Only the REST CG API has persistent CGs; ZAPI cg-start leaves nothing behind, so: [].
        """
        return []

    def delete_cg(self, cg: dict) -> None:
        """Delete consistency group CG (a record of list_temp_cgs); its volumes and snapshots stay."""
        raise self.error("transport %s has no consistency groups to delete" % self.transport,
                         "delete consistency group %s" % cg.get("name"))

    def predict_method(self, volumes: List[VolumeRef]) -> str:
        """The method create_snapshot_set would use for VOLUMES (read-only; for check mode)."""
        return "single" if len(volumes) == 1 else "cg_start_commit"

    def get_snapshot(self, svm: str, volume: str, name: str) -> Optional[dict]:
        for snap in self.list_snapshots(svm, volume, name):
            if snap.get("name") == name:
                return snap
        return None

    # ---- shared: the login's rights, before anything is touched ------------------------------
    def _login_role(self, user: str) -> Tuple[str, List[dict]]:  # pragma: no cover - per transport
        """(role name, privileges) of login USER: REST [{path, access}], ZAPI [{command, access}]."""
        raise NotImplementedError

    def privileges_for(self, operations: List[str]) -> Dict[str, Any]:
        """Whether the login's role allows every call OPERATIONS make (see _ontap_privileges.OPERATIONS).

        Returns {ok, checked, user, role, transport, missing, message}; `checked` False (and ok True, with a
        warning in self.warnings) when the role cannot be read: the run goes on and ONTAP still enforces it."""
        user = self.params.get("username")
        out: Dict[str, Any] = {"ok": True, "checked": False, "user": user, "role": None,
                               "transport": self.transport, "missing": [], "message": ""}
        if not user:
            self.warnings.append("%s: logged in by certificate without ontap_username, so the role's privileges "
                                 "were not checked before the run; set ontap_username to the certificate's user to "
                                 "have them checked (docs/security.md)." % self.hostname)
            return out
        needs = requirements(list(operations), self.transport, self.version())
        try:
            role, privileges = self._login_role(user)
        except OntapError as exc:
            # any refusal (403, 404, an API an SVM login cannot call) means "cannot read it", not "cannot run"
            if exc.is_auth or exc.is_transient:
                raise exc.with_context("read the role of user %s" % user, self.hostname) from None
            self.warnings.append("%s: user %s cannot read its own account and role (%s), so its privileges were not "
                                 "checked before the run; grant it readonly on /api/security/accounts and "
                                 "/api/security/roles (REST) or on `security login` (ZAPI) to have them checked "
                                 "(docs/security.md)." % (self.hostname, user, exc.message))
            return out
        missing = check_privileges(privileges, needs, self.transport)
        out.update(checked=True, role=role, missing=missing, ok=not missing)
        if missing:
            out["message"] = "user %s (role %s, transport %s) lacks rights this run needs: %s" % (
                user, role, self.transport, describe(missing, self.transport))
            out["hint"] = ("Grant them to role %s (a ready role: docs/security.md, section ONTAP privileges) or log in "
                           "as another user (ontap_username); nothing was touched." % role)
        return out

    # ---- shared: one consistent snapshot over many volumes -----------------------------------
    def create_snapshot_set(self, volumes: List[VolumeRef], name: str, comment: Optional[str] = None,
                            snapmirror_label: Optional[str] = None, precheck: bool = True,
                            until: Optional[int] = None) -> Dict[str, Any]:
        """One consistent snapshot NAME over VOLUMES [(svm, volume)]; all-or-nothing (see the contract).

        PRECHECK=False skips the "does NAME exist already" reads (for callers that checked in a pre-flight,
        e.g. inside a backup fence). The snapshots' uuid and create_time are read back.
        UNTIL (epoch; default now + 1 h) goes into the name of a temporary CG: after it, later runs may delete it.
        """
        self.temp_cg_until = int(until) if until is not None else int(time.time()) + TEMP_CG_LIFETIME
        volumes = [(str(s), str(v)) for s, v in volumes]
        if not volumes:
            raise OptionError("volumes: give at least one volume.")
        what = "create snapshot %s on %s" % (name, ", ".join("%s:%s" % sv for sv in volumes))
        existing = {}
        for svm, vol in volumes if precheck else []:
            existing[(svm, vol)] = self.call(what, lambda s=svm, v=vol: self.get_snapshot(s, v, name))
        clash = ["%s:%s" % sv for sv, snap in existing.items() if snap]
        if clash:
            raise self.error("snapshot %s already exists on %s" % (name, ", ".join(clash)), what, code="13020",
                             hint="Choose another name or delete the existing snapshot first; it is never overwritten.")
        attempt = 0
        while True:
            self.attempted_method = None
            try:
                method = self._create_set(volumes, name, comment, snapmirror_label)
                break
            except OntapError as exc:
                exc.with_context(what, self.hostname)
                found = self._created(volumes, name, comment)
                if exc.is_transient and len(found) == len(volumes) and attempt < self.retries:
                    # the controller did it although the answer was lost: done
                    method = self.attempted_method or ("single" if len(volumes) == 1 else "cg")
                    break
                self._cleanup(found, name, exc)
                if not exc.is_transient or attempt >= self.retries:
                    raise
                attempt += 1
                self.backoff(attempt)
        snapshots = []
        for svm, vol in volumes:
            snap = self.call(what, lambda s=svm, v=vol: self.get_snapshot(s, v, name))
            if not snap:
                # netapp.ontap #344: a read right after create can miss the object: retry the read once
                time.sleep(0.2)
                snap = self.call(what, lambda s=svm, v=vol: self.get_snapshot(s, v, name))
            if not snap:
                raise self.error("snapshot %s missing on %s:%s right after it was created" % (name, svm, vol), what)
            snapshots.append({"svm": svm, "volume": vol, "name": name, "uuid": snap.get("uuid"),
                              "create_time": snap.get("create_time")})
        return {"method": method, "snapshots": snapshots}

    def _created(self, volumes: List[VolumeRef], name: str, comment: Optional[str]) -> List[VolumeRef]:
        found = []
        for svm, vol in volumes:
            try:
                snap = self.get_snapshot(svm, vol, name)
            except OntapError:
                continue
            if snap and (comment is None or not snap.get("comment") or snap.get("comment") == comment):
                found.append((svm, vol))
        return found

    def _cleanup(self, created: List[VolumeRef], name: str, cause: OntapError) -> None:
        leftovers = []
        for svm, vol in created:
            try:
                self.delete_snapshot(svm, vol, name)
            except OntapError:
                leftovers.append("%s:%s" % (svm, vol))
        if leftovers:
            cause.message += ("; the partial snapshot %s could not be removed from %s: delete it by hand"
                              % (name, ", ".join(leftovers)))
        elif created:
            cause.message += "; the partial snapshots were removed again (%s)" % ", ".join("%s:%s" % c for c in created)


def has_netapp_lib() -> bool:
    try:
        import netapp_lib.api.zapi.zapi  # noqa: F401  pylint: disable=unused-import
    except ImportError:
        return False
    return True


def connect(params: Dict[str, Any], module_name: str = "") -> Ontap:
    """Validate the connection options and return a connected client (REST, ZAPI, or auto)."""
    p = validate_connection(params)
    try:
        return _connect(p, module_name)
    except OntapError as exc:
        if exc.is_auth or exc.is_forbidden:
            who = ("certificate %s" % p["cert_file"]) if p.get("cert_file") else ("user %s" % p.get("username"))
            exc.message += " (as %s, transport %s)" % (who, p["transport"])
        raise


def _connect(p: Dict[str, Any], module_name: str) -> Ontap:
    transport = p["transport"]
    if transport == "zapi":
        from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_zapi import OntapZapi
        client: Ontap = OntapZapi(p, module_name)
        client.version()
        return client
    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_rest import OntapRest
    rest = OntapRest(p, module_name)
    if transport == "rest":
        rest.version()
        return rest
    try:
        ver = rest.version()
        if ver[:2] not in ((9, 4), (9, 5)):
            return rest
    except OntapError as exc:
        if exc.is_auth or exc.is_forbidden or (exc.status is None and not exc.is_not_found):
            raise
    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_zapi import OntapZapi
    client = OntapZapi(p, module_name)
    client.version()
    return client
