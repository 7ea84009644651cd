# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ONTAP interface (see docs/dev/ontap-interface.md): the Ontap base class, the contract both transports
implement, and the value conversions they share.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import datetime
import functools
import re
import time
from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import OptionError
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_privileges import check as check_privileges
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_privileges import describe, requirements
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_records import (
    FileInfo,
    InterfaceRecord,
    LunRecord,
    RelationshipRecord,
    SnapshotBrief,
    SnapshotRecord,
    SnapshotSetResult,
    SvmRecord,
    TempCgRecord,
    VolumeRecord,
    VolumeRef,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_set import SnapshotSetPlan, commit_failed
from ansible_collections.kvmsnap.core.plugins.module_utils._retry import retry

T = TypeVar("T")
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


def _whole_number(value: Any) -> Optional[int]:
    """VALUE as an int when it is a number or a string of digits (ZAPI's epochs and seconds); else None."""
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() else None


def iso_to_epoch(value: Any) -> Optional[int]:
    """ISO-8601 with offset (REST create_time) or epoch digits (ZAPI access-time) → int epoch seconds."""
    number = _whole_number(value)
    if number is not None or value is None or value == "":
        return number
    text = str(value).strip()
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
    number = _whole_number(value)
    if number is not None or value is None or value == "":
        return number
    text = str(value).strip()
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


class Ontap(ABC):
    """The ONTAP interface: the contract both transports (OntapRest, OntapZapi) fulfil, and their shared logic.

    Every public method here is the interface the modules, the fence and the roles use; the abstract ones are
    implemented per transport (a transport lacking one cannot be instantiated). Every call raises OntapError
    (from _ontap_errors) when ONTAP refuses or cannot be reached: it names the host, the operation and a hint;
    its kinds (is_not_found, is_forbidden, is_busy, is_exists, is_transient, ...) say why. Records are the
    TypedDicts of _ontap_records (plain dicts at run time).
    """

    transport = "none"  # "rest" | "zapi"

    def __init__(self, params: Dict[str, Any], module_name: str = ""):
        self.params = params
        self.hostname: str = params["hostname"]
        self.module_name = module_name
        self.retries: int = int(params.get("retries", 3))
        self.timeout: int = int(params.get("timeout", 60))
        self._version: Optional[Tuple[int, int, int]] = None
        self.warnings: List[str] = []
        self.temp_cg_until: Optional[int] = None  # `until` for the temporary CG of the current snapshot set
        # time.monotonic() by which ONTAP's answers are wanted (take_snapshot_set); bounds return_timeout
        self.call_deadline: Optional[float] = None
        # (svm, volume) -> record: a fence asks for the same volumes several times
        self._volumes: Dict[Tuple[str, str], VolumeRecord] = {}

    # ---- helpers -------------------------------------------------------------------------------
    def error(self, message: str, operation: str, status: Optional[int] = None, code: Any = None,
              hint: Optional[str] = None) -> OntapError:
        return OntapError(message, status=status, code=code, operation=operation, hostname=self.hostname, hint=hint)

    def not_found(self, message: str, operation: str, hint: Optional[str] = None) -> OntapError:
        return self.error(message, operation, status=404, code="4", hint=hint)

    def call(self, operation: str, fn: Callable[[], T]) -> T:
        """Run FN, adding operation and hostname to any OntapError."""
        try:
            return fn()
        except OntapError as exc:
            raise exc.with_context(operation, self.hostname) from None

    # ---- cluster -------------------------------------------------------------------------------
    @abstractmethod
    def version(self) -> Tuple[int, int, int]:
        """The cluster's ONTAP version, e.g. (9, 13, 1); read once, then remembered."""

    @property
    def known_version(self) -> Optional[Tuple[int, int, int]]:
        """The version if it was read already (no call to ONTAP), else None."""
        return self._version

    def version_at_least(self, wanted: Tuple[int, int, int]) -> bool:
        return tuple(self.version()) >= tuple(wanted)

    @abstractmethod
    def list_svms(self) -> List[SvmRecord]:
        """The data SVMs: [{name, uuid, state}]."""

    @abstractmethod
    def list_volumes(self, svm: Optional[str] = None, name: Optional[str] = None) -> List[VolumeRecord]:
        """Volumes, of SVM and named NAME when given: [{name, uuid, svm, junction_path, size, state, type}]
        (junction_path None when unmounted); [] when none matches."""

    def get_volume(self, svm: str, name: str) -> VolumeRecord:
        """Volume NAME of SVM (remembered per client); OntapError is_not_found when it does not exist."""
        key = (svm, name)
        if key not in self._volumes:
            found = self.list_volumes(svm, name)
            if not found:
                raise self.not_found("volume %s not found on SVM %s" % (name, svm), "look up volume %s:%s" % (svm, name),
                                     hint="Check the volume and svm options (svm:volume) for this controller.")
            self._volumes[key] = found[0]
        return self._volumes[key]

    @abstractmethod
    def list_ip_interfaces(self) -> List[InterfaceRecord]:
        """IP interfaces: [{name, address, svm (None for cluster scope), services}]."""

    @abstractmethod
    def list_luns(self, svm: Optional[str] = None, volume: Optional[str] = None) -> List[LunRecord]:
        """LUNs, of SVM and in VOLUME when given: [{path (/vol/<volume>/<lun>), uuid, serial, svm, volume, size}]."""

    # ---- snapshots -----------------------------------------------------------------------------
    @abstractmethod
    def list_snapshots(self, svm: str, volume: str, name: Optional[str] = None) -> List[SnapshotRecord]:
        """Snapshots of SVM:VOLUME (only NAME when given), oldest first: [{name, uuid, volume, svm, create_time
        (epoch s), comment, snapmirror_label, state, busy, owners}]. OntapError is_not_found for an unknown volume."""

    def get_snapshot(self, svm: str, volume: str, name: str) -> Optional[SnapshotRecord]:
        """Snapshot NAME of SVM:VOLUME, or None when it does not exist."""
        for snap in self.list_snapshots(svm, volume, name):
            if snap.get("name") == name:
                return snap
        return None

    @abstractmethod
    def delete_snapshot(self, svm: str, volume: str, name: str) -> None:
        """Delete snapshot NAME of SVM:VOLUME; OntapError is_not_found when it does not exist, is_busy when it is
        in use (SnapMirror, clone, restore)."""

    @abstractmethod
    def _plan_set(self, plan: SnapshotSetPlan) -> None:
        """Transport step of prepare_snapshot_set: volume look-ups, plan.method/two_phase, a temporary CG."""

    @abstractmethod
    def _take_set(self, plan: SnapshotSetPlan) -> None:
        """Transport step of take_snapshot_set: only the call(s) that make the point in time."""

    @abstractmethod
    def _commit_set(self, plan: SnapshotSetPlan) -> None:
        """Transport step of commit_snapshot_set: the second phase of a two-phase snapshot (nothing otherwise)."""

    def _drop_set(self, plan: SnapshotSetPlan) -> None:
        """Remove what _plan_set made for PLAN (a temporary CG); a failure is a warning, never an error."""
        return None  # ZAPI makes nothing to remove

    @abstractmethod
    def _set_comment(self, svm: str, volume: str, name: str, comment: Optional[str],
                     label: Optional[str]) -> None:
        """Write COMMENT and LABEL (those not None) on snapshot NAME; a missing snapshot may be ignored."""

    def set_snapshot_comment(self, svm: str, volume: str, name: str, comment: str) -> None:
        """Replace the comment of snapshot NAME on SVM:VOLUME (404 OntapError when it does not exist)."""
        op = "set comment of snapshot %s on %s:%s" % (name, svm, volume)
        if not self.call(op, lambda: self.get_snapshot(svm, volume, name)):
            raise self.not_found("snapshot %s not found on %s:%s" % (name, svm, volume), op,
                                 hint="List the snapshots with kvmsnap.core.ontap_snapshot_info.")
        self._set_comment(svm, volume, name, comment, None)

    def snapshot_file_info(self, svm: str, volume: str, snapshot: str, path: str) -> Optional[FileInfo]:
        """{name, type, size} of PATH (relative to the volume root) inside snapshot SNAPSHOT of SVM:VOLUME, as
        ONTAP reports it (type: file, directory, lun, symlink, ...); None when the path is not in the snapshot.
        Other failures (volume unknown, no rights) raise OntapError."""
        return self._file_info(svm, volume, snapshot, path)

    def volume_file_info(self, svm: str, volume: str, path: str) -> Optional[FileInfo]:
        """{name, type, size} of PATH (relative to the volume root) in the active file system of SVM:VOLUME; None
        when nothing is there. Other failures raise OntapError."""
        return self._file_info(svm, volume, None, path)

    def _file_info(self, svm: str, volume: str, snapshot: Optional[str], path: str) -> Optional[FileInfo]:
        rel = snapshot_rel_path(path)
        where = "snapshot %s of %s:%s" % (snapshot, svm, volume) if snapshot is not None else "%s:%s" % (svm, volume)
        try:
            return self.call("look up %s in %s" % (rel, where),
                             lambda: self._snapshot_file_info(svm, volume, snapshot, rel))
        except OntapError as exc:
            if self._file_missing(exc):
                return None
            raise

    def snapshot_dir_entries(self, svm: str, volume: str, snapshot: str, path: str,
                             limit: int) -> Optional[Tuple[List[Dict[str, Any]], bool]]:
        """The entries ({name, type}, "." and ".." left out) of directory PATH (relative to the volume root) inside
        snapshot SNAPSHOT of SVM:VOLUME, at most LIMIT of them, and whether there were more; None when the
        transport cannot list a directory. Names are as ONTAP reports them: untrusted."""
        rel = snapshot_rel_path(path)
        return self.call("list %s in snapshot %s of %s:%s" % (rel, snapshot, svm, volume),
                         lambda: self._snapshot_dir_entries(svm, volume, snapshot, rel, limit))

    def _snapshot_dir_entries(self, svm: str, volume: str, snapshot: str, rel: str,
                              limit: int) -> Optional[Tuple[List[Dict[str, Any]], bool]]:
        """Transport step of snapshot_dir_entries; None: not supported by this transport."""
        return None

    @abstractmethod
    def _snapshot_file_info(self, svm: str, volume: str, snapshot: Optional[str], rel: str) -> Optional[FileInfo]:
        """Transport step of snapshot_file_info and volume_file_info (REL: relative path without a leading '/';
        SNAPSHOT None: the active file system)."""

    def _file_missing(self, exc: OntapError) -> bool:
        """Whether EXC of _snapshot_file_info means "not in the snapshot" (per transport)."""
        return exc.is_not_found

    def list_temp_cgs(self, svm: Optional[str] = None) -> List[TempCgRecord]:
        """Temporary consistency groups (`kvmsnap_tmp_*`) as {name, uuid, svm, volumes, until}.

        Only the REST CG API has persistent CGs; ZAPI cg-start leaves nothing behind, so: [].
        """
        return []

    def delete_cg(self, cg: TempCgRecord) -> None:
        """Delete consistency group CG (a record of list_temp_cgs); its volumes and snapshots stay."""
        raise self.error("transport %s has no consistency groups to delete" % self.transport,
                         "delete consistency group %s" % cg.get("name"))

    def predict_method(self, volumes: List[VolumeRef]) -> str:
        """The method create_snapshot_set would use for VOLUMES (read-only; for check mode)."""
        return "single" if len(volumes) == 1 else "cg_start_commit"

    # ---- restore -------------------------------------------------------------------------------
    @abstractmethod
    def restore_file(self, svm: str, volume: str, snapshot: str, path: str, restore_path: Optional[str] = None) -> str:
        """Single-file SnapRestore of PATH ('/'-prefixed, relative to the volume root) from SNAPSHOT, to
        RESTORE_PATH (default: in place); waits until ONTAP finished. Returns the method: "rest_restore_to"
        (REST 9.10.1+), "cli_passthrough" (older REST) or "zapi"."""

    @abstractmethod
    def restore_lun(self, svm: str, volume: str, snapshot: str, lun_path: str) -> str:
        """Restore LUN LUN_PATH (/vol/<volume>/<lun>) from SNAPSHOT in place. Returns the method ("rest_lun_clone"
        or "zapi"); OntapError when the path is not in VOLUME or the LUN does not exist."""

    @abstractmethod
    def restore_volume(self, svm: str, volume: str, snapshot: str, force: bool = False) -> None:
        """Revert the whole volume to SNAPSHOT (newer snapshots are deleted; FORCE when ONTAP asks for it)."""

    # ---- SnapMirror ----------------------------------------------------------------------------
    @abstractmethod
    def list_snapmirror(self, source: Optional[List[VolumeRef]] = None) -> List[RelationshipRecord]:
        """SnapMirror/SnapVault relationships (whose source is one of SOURCE when given): [{uuid, source,
        destination ({svm, volume, path}), policy, policy_type, state, healthy, unhealthy_reason, lag_time (s),
        transfer_state, last_transfer_end (epoch s), labels}]."""

    @abstractmethod
    def update_snapmirror(self, relationship: RelationshipRecord, snapshot: Optional[str] = None, wait: bool = True,
                          timeout: int = 300) -> RelationshipRecord:
        """Start a transfer on RELATIONSHIP (a record of list_snapmirror; of SNAPSHOT when given); with WAIT, until
        it ends or TIMEOUT s pass (OntapError then, and when the transfer fails). Returns the refreshed record."""

    # ---- SnapMirror restore (files of a destination's snapshot back into a volume) --------------
    def _rest_only(self, operation: str) -> OntapError:
        return self.error("a restore from a SnapMirror/SnapVault destination needs REST", operation,
                          hint="Set transport: rest (or auto) for controller %s; ONTAP 9.6 or later." % self.hostname)

    def restore_relationships(self, destination: str) -> List[Dict[str, Any]]:
        """The restore relationships whose destination is DESTINATION (svm:volume): [{uuid, source, state}]."""
        raise self._rest_only("list restore relationships of %s" % destination)

    def create_restore_relationship(self, source: str, destination: str) -> str:
        """A SnapMirror restore relationship SOURCE (a mirror or vault destination, svm:volume) -> DESTINATION
        (the read-write volume to restore into); returns its uuid."""
        raise self._rest_only("create a restore relationship %s -> %s" % (source, destination))

    def restore_transfer(self, relationship_uuid: str, snapshot: str, files: List[Tuple[str, str]],
                         timeout: int = 300) -> None:
        """On a restore relationship: copy FILES ([(path in the source, path in the destination)], at most 8)
        of SNAPSHOT into the destination; waits until the transfer ended (OntapError when it failed)."""
        raise self._rest_only("restore transfer of snapshot %s" % snapshot)

    def delete_relationship(self, relationship_uuid: str) -> None:
        """Delete a (restore) relationship."""
        raise self._rest_only("delete relationship %s" % relationship_uuid)

    # ---- shared: the login's rights, before anything is touched ------------------------------
    @abstractmethod
    def _login_role(self, user: str) -> Tuple[str, List[dict]]:
        """(role name, privileges) of login USER: REST [{path, access}], ZAPI [{command, access}]."""
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

    # ---- shared: one consistent snapshot over many volumes, in phases (_ontap_snapshot_set) ----------
    def prepare_snapshot_set(self, volumes: List[VolumeRef], name: str, comment: Optional[str] = None,
                             snapmirror_label: Optional[str] = None, precheck: bool = True,
                             until: Optional[int] = None) -> SnapshotSetPlan:
        """Everything before the point in time of snapshot NAME over VOLUMES [(svm, volume)] of this controller:
        volume look-ups, the method, a temporary CG where one is needed. Nothing is snapshotted yet.

        PRECHECK=False skips the "does NAME exist already" reads (for callers that checked in a pre-flight);
        NAME existing already on a volume raises OntapError code 13020 (never overwritten). UNTIL (epoch;
        default now + 1 h) goes into the name of a temporary CG: after it, later runs may delete it.
        """
        self.temp_cg_until = int(until) if until is not None else int(time.time()) + TEMP_CG_LIFETIME
        volumes = [(str(s), str(v)) for s, v in volumes]
        if not volumes:
            raise OptionError("volumes: give at least one volume.")
        plan = SnapshotSetPlan(volumes, name, comment, snapmirror_label)
        existing: Dict[VolumeRef, Optional[SnapshotRecord]] = {}
        for svm, vol in volumes if precheck else []:
            existing[(svm, vol)] = self.call(plan.what, functools.partial(self.get_snapshot, svm, vol, name))
        clash = ["%s:%s" % sv for sv, snap in existing.items() if snap]
        if clash:
            raise self.error("snapshot %s already exists on %s" % (name, ", ".join(clash)), plan.what, code="13020",
                             hint="Choose another name or delete the existing snapshot first; it is never overwritten.")
        self.call(plan.what, lambda: self._plan_set(plan))
        return plan

    def take_snapshot_set(self, plan: SnapshotSetPlan, deadline: Optional[float] = None) -> None:
        """The point in time of PLAN: the only ONTAP call(s) a fence waits for. DEADLINE (time.monotonic())
        bounds how long ONTAP is asked to hold each answer. Transient failures are retried from nothing (what a
        failed attempt made is removed); the last failure is raised after the same clean-up."""
        self.call_deadline = deadline

        def take_once(attempt: int) -> None:
            try:
                self._take_set(plan)
            except OntapError as exc:
                exc.with_context(plan.what, self.hostname)
                found = self._created(plan.volumes, plan.name, plan.comment)
                done_anyway = exc.is_transient and not plan.two_phase and len(found) == len(plan.volumes)
                if done_anyway and attempt < self.retries:
                    return  # the controller did it although the answer was lost: done
                self._cleanup(found, plan.name, exc)  # a retry starts from nothing
                raise

        try:
            retry(take_once, self.retries, lambda err: isinstance(err, OntapError) and err.is_transient)
        finally:
            self.call_deadline = None
        plan.taken = True

    def commit_snapshot_set(self, plan: SnapshotSetPlan) -> None:
        """End a two-phase snapshot (after the release of the VMs; safe in parallel with it).
        A failed commit removes the snapshots of PLAN and raises: no partial or uncommitted backup is kept."""
        if plan.committed or not plan.taken:
            return
        try:
            self.call(plan.what, lambda: self._commit_set(plan))
        except OntapError as exc:
            self._cleanup(self._created(plan.volumes, plan.name, None), plan.name, commit_failed(plan, exc))
            plan.taken = False
            raise
        plan.committed = True

    def finish_snapshot_set(self, plan: SnapshotSetPlan, readback: bool = True) -> SnapshotSetResult:
        """After the release: commit (if not yet), the comments the first phase could not carry, removal of the
        temporary CG, read-back. READBACK=False skips reading uuid/create_time back (they are then None)."""
        try:
            self.commit_snapshot_set(plan)
            if plan.comments_pending:
                def write_comments() -> None:
                    setter = plan.set_comment or self._set_comment
                    for svm, vol in plan.volumes:
                        setter(svm, vol, plan.name, plan.comment,
                               plan.label if plan.method == "multicreate" else None)
                try:
                    self.call(plan.what, write_comments)
                except OntapError as exc:
                    self._cleanup(self._created(plan.volumes, plan.name, None), plan.name, exc)
                    raise
                plan.comments_pending = False
        finally:
            self.abort_snapshot_set(plan)
        snapshots: List[SnapshotBrief] = []
        for svm, vol in plan.volumes:
            if not readback:
                snapshots.append({"svm": svm, "volume": vol, "name": plan.name, "uuid": None, "create_time": None})
                continue
            snap = self.call(plan.what, functools.partial(self.get_snapshot, svm, vol, plan.name))
            if not snap:
                # netapp.ontap #344: a read right after create can miss the object: retry the read once
                time.sleep(0.2)
                snap = self.call(plan.what, functools.partial(self.get_snapshot, svm, vol, plan.name))
            if not snap:
                raise self.error("snapshot %s missing on %s:%s right after it was created" % (plan.name, svm, vol),
                                 plan.what)
            snapshots.append({"svm": svm, "volume": vol, "name": plan.name, "uuid": snap.get("uuid"),
                              "create_time": snap.get("create_time")})
        plan.finished = True
        return {"method": plan.method, "snapshots": snapshots}

    def abort_snapshot_set(self, plan: SnapshotSetPlan) -> None:
        """Remove what prepare made (a temporary CG); the snapshots, if any were taken, stay. Idempotent."""
        self._drop_set(plan)
        self.warnings.extend(plan.warnings)
        plan.warnings = []

    def create_snapshot_set(self, volumes: List[VolumeRef], name: str, comment: Optional[str] = None,
                            snapmirror_label: Optional[str] = None, precheck: bool = True,
                            readback: bool = True, until: Optional[int] = None) -> SnapshotSetResult:
        """One consistent snapshot NAME over VOLUMES [(svm, volume)] of this controller, all-or-nothing: the phases
        prepare, take, commit and finish in one go (a fence runs them itself, around the quiesce and release).

        REST 9.10.1+: an existing CG covering exactly them, else a temporary CG (created, snapshotted, deleted);
        ZAPI (and REST where no CG fits): cg-start/cg-commit per SVM, or snapshot-multicreate; one volume: a plain
        create. Returns {method: cg | cg_temporary | cg_start_commit | multicreate | single, snapshots: [{svm,
        volume, name, uuid, create_time}]}. On failure it deletes what it created (only those, by name and volume)
        and raises OntapError; NAME existing already on a volume raises OntapError code 13020 (never overwritten).
        """
        plan = self.prepare_snapshot_set(volumes, name, comment, snapmirror_label, precheck=precheck, until=until)
        try:
            self.take_snapshot_set(plan)
        except BaseException:
            self.abort_snapshot_set(plan)
            raise
        return self.finish_snapshot_set(plan, readback=readback)

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
