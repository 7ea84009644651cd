"""Roles as ONTAP lists them: REST privileges (API path + access) and command directories (ZAPI/CLI).

The simulator enforces a role by actions (rest.py / zapi.py tag every call with one); this module
turns a role's action set into the privilege lists ONTAP answers on GET /api/security/roles/{owner}/
{name}/privileges and security-login-role-get-iter, and a custom role given as privileges back into
the actions it allows, by ONTAP's rule: the longest privilege path that is a prefix of the API path
decides (`*` in a privilege path matches one path segment; "DEFAULT" is the command fallback).
"""

from __future__ import annotations

from typing import Any

# REST access levels, and what each allows (security login rest-role create -access ...).
REST_ACCESS: dict[str, set[str]] = {
    "none": set(),
    "readonly": {"read"},
    "read_create": {"read", "create"},
    "read_modify": {"read", "modify"},
    "read_create_modify": {"read", "create", "modify"},
    "all": {"read", "create", "modify", "delete"},
}
CLI_ACCESS = ("none", "readonly", "all")

SNAPSHOTS = "/api/storage/volumes/*/snapshots"

# action -> (REST path, verb it needs there), and (command directory, access) for ZAPI.
ACTION_REST: dict[str, tuple[str, str]] = {
    "read": ("/api/storage/volumes", "read"),
    "security_read": ("/api/security/accounts", "read"),
    "snapshot_create": (SNAPSHOTS, "create"),
    "snapshot_modify": (SNAPSHOTS, "modify"),
    "snapshot_delete": (SNAPSHOTS, "delete"),
    "restore": ("/api/storage/volumes", "modify"),
    "snapmirror_update": ("/api/snapmirror/relationships", "create"),
    # restore from a SnapMirror destination: create, transfer on and delete a restore relationship
    "snapmirror_restore": ("/api/snapmirror/relationships", "delete"),
    "cg_manage": ("/api/application/consistency-groups", "delete"),
}
ACTION_CLI: dict[str, list[str]] = {
    "snapshot_create": ["volume snapshot create"],
    "snapshot_modify": ["volume snapshot modify", "volume snapshot rename"],
    "snapshot_delete": ["volume snapshot delete"],
    "restore": ["volume snapshot restore-file", "volume snapshot restore", "lun"],
    "snapmirror_update": ["snapmirror update"],
    "snapmirror_restore": ["snapmirror restore", "snapmirror delete", "snapmirror release"],
}


def _segments(path: str) -> list[str]:
    return [p for p in str(path).split("/") if p]


def path_matches(privilege: str, path: str) -> bool:
    """PRIVILEGE (may hold `*` segments) is PATH or a prefix of it."""
    pseg, aseg = _segments(privilege), _segments(path)
    return len(pseg) <= len(aseg) and all(p in ("*", a) for p, a in zip(pseg, aseg))


def rest_access(privileges: list[dict[str, Any]], path: str) -> str:
    """The access the longest matching privilege gives on PATH ("none" when nothing matches)."""
    best, access = -1, "none"
    for priv in privileges:
        if path_matches(priv["path"], path) and len(_segments(priv["path"])) > best:
            best, access = len(_segments(priv["path"])), priv["access"]
    return access


def cli_access(commands: list[dict[str, Any]], command: str) -> str:
    best, access = -1, "none"
    words = command.split()
    for cmd in commands:
        cw = cmd["command"].split()
        if cmd["command"] == "DEFAULT":
            if best < 0:
                best, access = 0, cmd["access"]
        elif cw == words[:len(cw)] and len(cw) > best:
            best, access = len(cw), cmd["access"]
    return access


def privileges_from_actions(actions: set[str]) -> dict[str, list[dict[str, Any]]]:
    """{privileges, commands} of a role that allows exactly ACTIONS (the simulator's action roles)."""
    if actions >= set(ACTION_REST) - {"security_read"}:
        return {"privileges": [{"path": "/api", "access": "all"}],
                "commands": [{"command": "DEFAULT", "access": "all"}]}
    privs: list[dict[str, Any]] = []
    if "read" in actions:
        privs.append({"path": "/api", "access": "readonly"})
    snap = {"create" for a in ("snapshot_create",) if a in actions} | \
        {"modify" for a in ("snapshot_modify",) if a in actions} | \
        {"delete" for a in ("snapshot_delete",) if a in actions}
    if snap:
        privs.append({"path": SNAPSHOTS, "access": _access_for(snap)})
    for action, path, access in (("restore", "/api/storage/volumes", "read_modify"),
                                 ("restore", "/api/storage/luns", "read_modify"),
                                 ("restore", "/api/private/cli/volume/snapshot/restore-file", "all"),
                                 ("snapmirror_update", "/api/snapmirror/relationships", "read_create"),
                                 ("snapmirror_restore", "/api/snapmirror/relationships", "all"),
                                 ("cg_manage", "/api/application/consistency-groups", "all")):
        if action in actions:
            privs.append({"path": path, "access": access})
    cmds = [{"command": "DEFAULT", "access": "readonly" if "read" in actions else "none"}]
    for action, dirs in ACTION_CLI.items():
        if action in actions:
            cmds += [{"command": d, "access": "all"} for d in dirs]
    return {"privileges": privs, "commands": cmds}


def _access_for(verbs: set[str]) -> str:
    verbs = verbs | {"read"}
    if "delete" in verbs:
        return "all"
    return next(name for name, allowed in REST_ACCESS.items() if allowed == verbs)


def actions_from_privileges(privileges: list[dict[str, Any]]) -> set[str]:
    """The actions a role with these REST privileges may do (how ONTAP would judge each call)."""
    return {action for action, (path, verb) in ACTION_REST.items()
            if verb in REST_ACCESS.get(rest_access(privileges, path), set())}


def commands_from_privileges(privileges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ONTAP maps a REST role onto a traditional role of the same name; this is the simulator's mapping."""
    return privileges_from_actions(actions_from_privileges(privileges))["commands"]
