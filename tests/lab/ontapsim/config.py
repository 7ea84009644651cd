"""Cluster configuration: the default lab cluster and the YAML schema (tests/lab/README.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from . import rbac

# Per call kind, seconds. Snapshot creation is what a backup fence waits on, so it is the
# only kind that costs something by default (a real WAFL snapshot takes ~100-200 ms).
DEFAULT_LATENCY: dict[str, float] = {
    "snapshot_create": 0.15,
    "snapshot_multicreate": 0.15,
    "cg_snapshot": 0.15,
    "cg_start": 0.15,
    "cg_commit": 0.15,
    # a ZAPI single-file restore returns, then its data lands this much later (ONTAP finishes it in the background)
    "sfsr_background": 0.3,
    "default": 0.0,
}

ROLE_ACTIONS: dict[str, set[str]] = {
    "admin": {"read", "snapshot_create", "snapshot_modify", "snapshot_delete", "restore",
              "snapmirror_update", "snapmirror_restore", "cg_manage"},
    # What a backup job needs: snapshots, replication, CGs; no restore.
    "backup": {"read", "snapshot_create", "snapshot_modify", "snapshot_delete",
               "snapmirror_update", "cg_manage"},
    # Like backup but may not delete snapshots (tests retention pruning refused).
    "backup_nodelete": {"read", "snapshot_create", "snapshot_modify", "snapmirror_update", "cg_manage"},
    "readonly": {"read"},
}
ALL_ACTIONS = ROLE_ACTIONS["admin"] | {"security_read"}

DEFAULT_CONFIG: dict[str, Any] = {
    "cluster": {"name": "lab-cluster", "version": "9.13.1"},
    "users": [
        {"name": "admin", "password": "netapp123", "role": "admin"},
        {"name": "backup_ro", "password": "netapp123", "role": "readonly"},
    ],
    "svms": [{"name": "svm1", "lifs": [{"name": "svm1_data1", "address": "127.0.0.1"}]}],
    "volumes": [
        {"name": "vol_ds1", "svm": "svm1", "junction_path": "/vol_ds1", "size": "10G"},
        {"name": "vol_ds2", "svm": "svm1", "junction_path": "/vol_ds2", "size": "10G"},
    ],
    "luns": [],
    "policies": [],
    "relationships": [],
    # Peered clusters: [{cluster, data (its --data directory), svms: [{local, peer}]}]; see ontapsim/peers.py.
    "peers": [],
}

BUILTIN_POLICIES: list[dict[str, Any]] = [
    {"name": "MirrorAllSnapshots", "type": "async", "rules": []},
    {"name": "Asynchronous", "type": "async", "rules": []},
    {"name": "XDPDefault", "type": "vault", "rules": [{"label": "daily", "count": 7},
                                                      {"label": "weekly", "count": 52}]},
    {"name": "MirrorAndVault", "type": "mirror_vault", "rules": [{"label": "daily", "count": 7},
                                                                 {"label": "weekly", "count": 52}]},
]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?\s*$", re.I)


class ConfigError(ValueError):
    pass


def parse_size(value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"invalid size {value!r}")
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ConfigError(f"invalid size {value!r}")
    mult = 1024 ** ("kmgtp".find(m.group(2).lower()) + 1) if m.group(2) else 1
    return int(float(m.group(1)) * mult)


def parse_version(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in str(text).split(".")]
    if len(parts) not in (2, 3) or parts[0] != 9:
        raise ConfigError(f"cluster.version must look like 9.13.1, got {text!r}")
    return (parts[0], parts[1], parts[2] if len(parts) == 3 else 0)


def load(path: Path | None) -> dict[str, Any]:
    """The normalised configuration: DEFAULT_CONFIG, or the YAML file (missing keys defaulted)."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    cfg: dict[str, Any] = {k: raw.get(k, v) for k, v in DEFAULT_CONFIG.items()} if raw else dict(DEFAULT_CONFIG)
    cfg["cluster"] = {**DEFAULT_CONFIG["cluster"], **(raw.get("cluster") or {})}
    cfg["version"] = parse_version(cfg["cluster"]["version"])
    roles = {k: _with_security_read(set(v)) for k, v in ROLE_ACTIONS.items()}
    privileges = {k: rbac.privileges_from_actions(v) for k, v in roles.items()}
    for name, spec in (raw.get("roles") or {}).items():
        if isinstance(spec, dict):
            privs = _privileges(name, spec.get("privileges"))
            roles[name] = rbac.actions_from_privileges(privs)
            privileges[name] = {"privileges": privs, "commands": rbac.commands_from_privileges(privs)}
            continue
        unknown = set(spec) - ALL_ACTIONS
        if unknown:
            raise ConfigError(f"role {name}: unknown actions {sorted(unknown)}; known: {sorted(ALL_ACTIONS)}")
        roles[name] = _with_security_read(set(spec))
        privileges[name] = rbac.privileges_from_actions(roles[name])
    cfg["roles"] = roles
    cfg["role_privileges"] = privileges
    for user in cfg["users"]:
        if user.get("role", "admin") not in roles:
            raise ConfigError(f"user {user.get('name')}: unknown role {user.get('role')!r}")
    latency = dict(DEFAULT_LATENCY)
    latency.update({k: float(v) for k, v in (raw.get("latency") or {}).items()})
    cfg["latency"] = latency
    cfg["latency_scale"] = float(raw.get("latency_scale", 1.0))
    cfg["options"] = {"zapi": True, "zapi_default_max_records": 20, "cg_fence_scale": 1.0,
                      **(raw.get("options") or {})}
    policies = {p["name"]: p for p in BUILTIN_POLICIES}
    for pol in cfg.get("policies") or []:
        if pol.get("type", "async") not in ("async", "vault", "mirror_vault"):
            raise ConfigError(f"policy {pol.get('name')}: type must be async, vault or mirror_vault")
        policies[pol["name"]] = {"name": pol["name"], "type": pol.get("type", "async"),
                                 "rules": [r if isinstance(r, dict) else {"label": r, "count": 7}
                                           for r in pol.get("rules") or pol.get("labels") or []]}
    cfg["policies"] = list(policies.values())
    _check_topology(cfg)
    return cfg


def _with_security_read(actions: set[str]) -> set[str]:
    # ONTAP's builtin roles that read everything also read the login's own account and role
    return actions | {"security_read"} if "read" in actions else actions


def _privileges(name: str, privs: Any) -> list[dict[str, Any]]:
    """A custom REST role's privileges [{path, access}], checked as `security login rest-role create` does."""
    if not isinstance(privs, list) or not privs:
        raise ConfigError(f"role {name}: privileges must be a list of {{path, access}}")
    out = []
    for priv in privs:
        if not isinstance(priv, dict) or not str(priv.get("path", "")).startswith("/api"):
            raise ConfigError(f"role {name}: privilege {priv!r} needs a path under /api")
        access = priv.get("access", "all")
        if access not in rbac.REST_ACCESS:
            raise ConfigError(f"role {name}: access {access!r} must be one of {sorted(rbac.REST_ACCESS)}")
        out.append({"path": str(priv["path"]), "access": access})
    return out


def _check_topology(cfg: dict[str, Any]) -> None:
    svms = {s["name"] for s in cfg["svms"]}
    vols = set()
    for vol in cfg["volumes"]:
        if vol.get("svm") not in svms:
            raise ConfigError(f"volume {vol.get('name')}: unknown svm {vol.get('svm')!r}")
        vols.add((vol["svm"], vol["name"]))
    for lun in cfg["luns"]:
        m = re.match(r"^/vol/([^/]+)/([^/]+)$", str(lun.get("path", "")))
        if not m:
            raise ConfigError(f"lun {lun.get('path')!r}: path must be /vol/<volume>/<name>")
        if (lun.get("svm"), m.group(1)) not in vols:
            raise ConfigError(f"lun {lun['path']}: volume {m.group(1)} not declared in svm {lun.get('svm')!r}")
        serial = lun.get("serial_number")
        if serial is not None and len(str(serial)) != 12:
            raise ConfigError(f"lun {lun['path']}: serial_number must have 12 characters")
    peer_svms = _check_peers(cfg, svms)
    names = {p["name"] for p in cfg["policies"]}
    for rel in cfg["relationships"]:
        for end in ("source", "destination"):
            if ":" not in str(rel.get(end, "")):
                raise ConfigError(f"relationship {rel}: {end} must be svm:volume")
        src_svm, dst_svm = rel["source"].split(":", 1)[0], rel["destination"].split(":", 1)[0]
        if dst_svm not in svms:
            raise ConfigError(f"relationship {rel}: unknown svm in destination {rel['destination']!r}")
        if rel.get("source_cluster") is not None:
            # A relationship lives on its destination cluster; its source is a peered SVM of the peer cluster.
            if (dst_svm, src_svm) not in peer_svms.get(rel["source_cluster"], set()):
                raise ConfigError(f"relationship {rel}: svm {dst_svm!r} is not peered with svm {src_svm!r} of "
                                  f"cluster {rel['source_cluster']!r} (peers)")
        elif src_svm not in svms:
            raise ConfigError(f"relationship {rel}: unknown svm in source {rel['source']!r}")
        if rel.get("policy", "MirrorAllSnapshots") not in names:
            raise ConfigError(f"relationship {rel}: unknown policy {rel.get('policy')!r}")


def _check_peers(cfg: dict[str, Any], svms: set[str]) -> dict[str, set[tuple[str, str]]]:
    """The peers entries checked; {peer cluster: {(local svm, peer svm)}}."""
    if not isinstance(cfg["peers"], list):
        raise ConfigError("peers must be a list of {cluster, data, svms}")
    out: dict[str, set[tuple[str, str]]] = {}
    for peer in cfg["peers"]:
        if not isinstance(peer, dict) or not peer.get("cluster") or not peer.get("data"):
            raise ConfigError(f"peer {peer!r}: needs cluster (its name) and data (its --data directory)")
        if peer["cluster"] == cfg["cluster"]["name"] or peer["cluster"] in out:
            raise ConfigError(f"peer {peer['cluster']!r}: a peer is another cluster, named once")
        pairs = set()
        for sp in peer.get("svms") or []:
            if not isinstance(sp, dict) or sp.get("local") not in svms or not sp.get("peer"):
                raise ConfigError(f"peer {peer['cluster']}: svm peering {sp!r} needs local (one of {sorted(svms)}) "
                                  "and peer (the SVM on the peer cluster)")
            pairs.add((str(sp["local"]), str(sp["peer"])))
        out[str(peer["cluster"])] = pairs
    return out
