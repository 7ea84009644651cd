# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What each operation of a run needs from the ONTAP login's role, and the check of a role against it.

This module util is PRIVATE to the collection. It may change without notice.

ONTAP judges a REST call by the role's privilege with the longest path that is a prefix of the call's path
(`*` in a privilege path stands for one segment, e.g. /api/storage/volumes/*/snapshots), and a ZAPI call by the
command directory with the most words that starts the call's command ("DEFAULT" when none does). The check
runs in the pre-flight, before any VM is touched; docs/security.md has the role that passes it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

# REST access level -> the verbs it allows (security login rest-role create -access ...)
REST_ACCESS: Dict[str, Tuple[str, ...]] = {
    "none": (),
    "readonly": ("read",),
    "read_create": ("read", "create"),
    "read_modify": ("read", "modify"),
    "read_create_modify": ("read", "create", "modify"),
    "all": ("read", "create", "modify", "delete"),
}
# the least access level that allows a verb (what the message asks for)
LEAST_REST = {"read": "readonly", "create": "read_create", "modify": "read_modify", "delete": "all"}
CLI_ACCESS = ("none", "readonly", "all")

SNAPSHOTS = "/api/storage/volumes/*/snapshots"
CGS = "/api/application/consistency-groups"

# operation -> ([(REST path, verb)], [(ZAPI command directory, access)])
OPERATIONS: Dict[str, Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]] = {
    "read": ([("/api/storage/volumes", "read"), (SNAPSHOTS, "read")],
             [("volume show", "readonly"), ("volume snapshot show", "readonly")]),
    "snapshot_create": ([(SNAPSHOTS, "create")], [("volume snapshot create", "all")]),
    "snapshot_modify": ([(SNAPSHOTS, "modify")], [("volume snapshot modify", "all")]),
    "snapshot_delete": ([(SNAPSHOTS, "delete")], [("volume snapshot delete", "all")]),
    "snapmirror_update": ([("/api/snapmirror/relationships", "create")], [("snapmirror update", "all")]),
    # the temporary CG of a snapshot over several volumes of one SVM: created, then deleted (REST only)
    "cg_create": ([(CGS, "create"), (CGS, "delete")], []),
    "file_restore": ([("/api/storage/volumes", "modify")], [("volume snapshot restore-file", "all")]),
    "volume_restore": ([("/api/storage/volumes", "modify")], [("volume snapshot restore", "all")]),
    "lun_restore": ([("/api/storage/luns", "modify")], [("volume snapshot restore-file", "all")]),
    "files_read": ([("/api/storage/volumes", "read")], [("volume file", "readonly")]),
    # a restore from a SnapMirror/SnapVault destination: a restore relationship created, transferred on, deleted
    "vault_restore": ([("/api/snapmirror/relationships", "create"), ("/api/snapmirror/relationships", "delete")],
                      [("snapmirror restore", "all"), ("snapmirror delete", "all")]),
}
# what ONTAP 9.9.1 and older need for a single-file restore over REST (no restore_to.path yet)
CLI_FILE_RESTORE = "/api/private/cli/volume/snapshot/restore-file"


def _segments(path: str) -> List[str]:
    return [p for p in str(path).split("/") if p]


def _matches(privilege: str, path: str) -> bool:
    pseg, aseg = _segments(privilege), _segments(path)
    return len(pseg) <= len(aseg) and all(p in ("*", a) for p, a in zip(pseg, aseg))


def rest_access(privileges: List[Dict[str, Any]], path: str) -> Tuple[str, Optional[str]]:
    """(access, deciding privilege path) on PATH: the longest matching privilege path wins."""
    best: Tuple[int, str, Optional[str]] = (-1, "none", None)
    for priv in privileges:
        ppath = str(priv.get("path") or "")
        if ppath and _matches(ppath, path) and len(_segments(ppath)) > best[0]:
            best = (len(_segments(ppath)), str(priv.get("access") or "none"), ppath)
    return best[1], best[2]


def cli_access(commands: List[Dict[str, Any]], command: str) -> Tuple[str, Optional[str]]:
    """(access, deciding command directory) for COMMAND: the longest matching directory, else DEFAULT."""
    words = command.split()
    best: Tuple[int, str, Optional[str]] = (-1, "none", None)
    for cmd in commands:
        name = str(cmd.get("command") or "")
        cw = name.split()
        if name == "DEFAULT":
            if best[0] < 0:
                best = (0, str(cmd.get("access") or "none"), name)
        elif cw and cw == words[:len(cw)] and len(cw) > best[0]:
            best = (len(cw), str(cmd.get("access") or "none"), name)
    return best[1], best[2]


def requirements(operations: List[str], transport: str, version: Tuple[int, int, int]
                 ) -> List[Tuple[str, str, str]]:
    """[(operation, path or command, access needed)] for OPERATIONS on TRANSPORT (rest or zapi)."""
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown:
        raise ValueError("unknown ONTAP operation(s) %s; known: %s" % (", ".join(unknown), ", ".join(OPERATIONS)))
    out = []
    for op in operations:
        rest, cli = OPERATIONS[op]
        if transport == "zapi":
            out += [(op, cmd, access) for cmd, access in cli]
            continue
        if op == "file_restore" and tuple(version) < (9, 10, 1):
            rest = [(CLI_FILE_RESTORE, "delete")]
        out += [(op, path, LEAST_REST[verb]) for path, verb in rest]
    return out


def check(privileges: List[Dict[str, Any]], needs: List[Tuple[str, str, str]], transport: str
          ) -> List[Dict[str, Any]]:
    """The NEEDS a role's PRIVILEGES ([{path, access}] or, for zapi, [{command, access}]) do not meet:
    [{operation, path, needed, has, decided_by}]."""
    missing = []
    for op, where, needed in needs:
        if transport == "zapi":
            has, by = cli_access(privileges, where)
            ok = CLI_ACCESS.index(has) >= CLI_ACCESS.index(needed) if has in CLI_ACCESS else False
        else:
            has, by = rest_access(privileges, where)
            ok = set(REST_ACCESS[needed]) <= set(REST_ACCESS.get(has, ()))
        if not ok:
            missing.append({"operation": op, "path": where, "needed": needed, "has": has, "decided_by": by})
    return missing


def describe(missing: List[Dict[str, Any]], transport: str) -> str:
    what = "command" if transport == "zapi" else "API path"
    return "; ".join("%s needs %s access on %s %s (the role has %s%s)" % (
        m["operation"], m["needed"], what, m["path"], m["has"],
        " from %s" % m["decided_by"] if m.get("decided_by") else ": nothing matches") for m in missing)
