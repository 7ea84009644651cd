"""The cluster's state as one JSON document (DIR/state.json), guarded by one lock.

Seeded from the configuration on first start; later starts load it, so volumes, snapshots,
jobs, LUNs, relationships and CGs survive a restart. Users, roles, latency and the cluster
name/version always come from the configuration.
"""

from __future__ import annotations

import json
import os
import random
import string
import threading
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

from .config import parse_size
from .errors import SimError
from .peers import Peers
from .storage import Storage

STATE_VERSION = 1
MAX_JOBS = 500

_SERIAL_CHARS = string.ascii_letters + string.digits + "#$%&*+-?"


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def new_serial() -> str:
    # ONTAP serials are 12 printable characters, sometimes with REST query characters.
    return "".join(random.choice(_SERIAL_CHARS) for _i in range(12))


class State:
    def __init__(self, data_dir: Path, cfg: dict[str, Any], storage: Storage) -> None:
        self.lock = threading.RLock()
        self.data_dir = data_dir
        self.path = data_dir / "state.json"
        self.cfg = cfg
        self.storage = storage
        self.peers = Peers(cfg.get("peers"))
        if self.path.exists():
            self.doc = json.loads(self.path.read_text())
        else:
            self.doc = self._seed()
        # Name and version follow the config so a 9.8 run can reuse a 9.13.1 data dir.
        self.doc["cluster"]["name"] = cfg["cluster"]["name"]
        self.doc["cluster"]["version"] = list(cfg["version"])
        for vol in self.doc["volumes"].values():
            storage.ensure_volume(self.svm_name(vol["svm"]), vol["name"])
        for lun in self.doc["luns"].values():
            vol = self.doc["volumes"][lun["volume"]]
            storage.ensure_file(self.svm_name(vol["svm"]), vol["name"], lun["name"], lun["size"])
        self.save()

    # -- persistence -------------------------------------------------------------------
    def save(self) -> None:
        with self.lock:
            tmp = self.path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(self.doc, indent=1, sort_keys=True))
            os.replace(tmp, self.path)

    def reset(self) -> None:
        with self.lock:
            self.storage.wipe()
            self.doc = self._seed()
            for vol in self.doc["volumes"].values():
                self.storage.ensure_volume(self.svm_name(vol["svm"]), vol["name"])
            for lun in self.doc["luns"].values():
                vol = self.doc["volumes"][lun["volume"]]
                self.storage.ensure_file(self.svm_name(vol["svm"]), vol["name"], lun["name"], lun["size"])
            self.save()

    def _seed(self) -> dict[str, Any]:
        cfg = self.cfg
        cl = cfg["cluster"]
        doc: dict[str, Any] = {
            "state_version": STATE_VERSION,
            "cluster": {"name": cl["name"], "uuid": cl.get("uuid") or new_uuid(), "version": list(cfg["version"])},
            "nodes": [{"uuid": new_uuid(), "name": f"{cl['name']}-01", "serial_number": "4082368511",
                       "model": "SIMBOX", "management_address": "127.0.0.11"}],
            "svms": {}, "lifs": {}, "volumes": {}, "luns": {}, "policies": {}, "relationships": {},
            "cgs": {}, "jobs": {}, "cg_pending": {}, "counters": {"cg_id": 0},
        }
        doc["lifs"][new_uuid()] = {"name": "cluster_mgmt", "address": "127.0.0.10", "netmask": "8",
                                   "svm": None, "scope": "cluster", "role": "cluster_mgmt",
                                   "services": ["management_core", "management_https"]}
        for svm in cfg["svms"]:
            su = svm.get("uuid") or new_uuid()
            doc["svms"][su] = {"uuid": su, "name": svm["name"], "subtype": svm.get("subtype", "default"),
                               "state": "running"}
            lifs = svm.get("lifs") or [{"address": a} for a in svm.get("data_lifs") or []]
            for i, lif in enumerate(lifs, 1):
                doc["lifs"][new_uuid()] = {
                    "name": lif.get("name", f"{svm['name']}_data{i}"), "address": lif["address"],
                    "netmask": str(lif.get("netmask", "24")), "svm": su, "scope": "svm", "role": "data",
                    "services": lif.get("services", ["data_core", "data_nfs", "data_iscsi"])}
        now = time.time()
        for vol in cfg["volumes"]:
            vu = vol.get("uuid") or new_uuid()
            doc["volumes"][vu] = {
                "uuid": vu, "name": vol["name"], "svm": self._svm_uuid_in(doc, vol["svm"]),
                "junction_path": vol.get("junction_path", f"/{vol['name']}"),
                "size": parse_size(vol.get("size", "10G")), "type": vol.get("type", "rw"),
                "state": "online", "create_time": now, "snapshots": []}
        for lun in cfg["luns"]:
            vname, lname = lun["path"].split("/", 3)[2:]
            su = self._svm_uuid_in(doc, lun["svm"])
            vu = next(u for u, v in doc["volumes"].items() if v["name"] == vname and v["svm"] == su)
            lu = lun.get("uuid") or new_uuid()
            doc["luns"][lu] = {"uuid": lu, "name": lname, "volume": vu,
                               "serial_number": str(lun.get("serial_number") or new_serial()),
                               "size": parse_size(lun.get("size", "1G")), "os_type": lun.get("os_type", "linux")}
        for pol in cfg["policies"]:
            pu = new_uuid()
            doc["policies"][pu] = {"uuid": pu, **pol}
        for rel in cfg["relationships"]:
            self._seed_relationship(doc, rel, now)
        return doc

    def _seed_relationship(self, doc: dict[str, Any], rel: dict[str, Any], now: float) -> None:
        ends: dict[str, Any] = {"source": None}
        remote = None
        if rel.get("source_cluster") is not None:
            # The source is a volume of the peer cluster (its SVM peered with ours): only its path is kept.
            svm_name, vol_name = rel["source"].split(":", 1)
            remote = {"cluster": rel["source_cluster"], "svm": svm_name, "volume": vol_name}
        for end in ("source", "destination") if remote is None else ("destination",):
            svm_name, vol_name = rel[end].split(":", 1)
            su = self._svm_uuid_in(doc, svm_name)
            vu = next((u for u, v in doc["volumes"].items() if v["name"] == vol_name and v["svm"] == su), None)
            if vu is None:
                # Destination volumes may be left implicit: a DP volume, as SnapMirror creates.
                vu = new_uuid()
                doc["volumes"][vu] = {"uuid": vu, "name": vol_name, "svm": su, "junction_path": None,
                                      "size": parse_size(rel.get("size", "10G")), "type":
                                      "dp" if end == "destination" else "rw",
                                      "state": "online", "create_time": now, "snapshots": []}
            elif end == "destination":
                doc["volumes"][vu]["type"] = "dp"
            ends[end] = vu
        pol_name = rel.get("policy", "MirrorAllSnapshots")
        pu = next(u for u, p in doc["policies"].items() if p["name"] == pol_name)
        ru = rel.get("uuid") or new_uuid()
        doc["relationships"][ru] = {
            "uuid": ru, "source": ends["source"], "destination": ends["destination"], "policy": pu,
            "source_remote": remote,
            "state": rel.get("state", "snapmirrored"), "healthy": bool(rel.get("healthy", True)),
            "unhealthy_reason": rel.get("unhealthy_reason"), "transfers": [], "last_transfer_time": None}

    @staticmethod
    def _svm_uuid_in(doc: dict[str, Any], name: str) -> str:
        for u, s in doc["svms"].items():
            if s["name"] == name:
                return u
        raise KeyError(name)

    # -- lookups (callers hold the lock) ---------------------------------------------------
    @property
    def version(self) -> tuple[int, int, int]:
        v = self.doc["cluster"]["version"]
        return (v[0], v[1], v[2])

    def at_least(self, version: tuple[int, int, int]) -> bool:
        return self.version >= version

    def svm_name(self, svm_uuid: str) -> str:
        return self.doc["svms"][svm_uuid]["name"]

    def find_svm(self, name: str | None = None, uuid: str | None = None) -> dict[str, Any]:
        for s in self.doc["svms"].values():
            if (name is None or s["name"] == name) and (uuid is None or s["uuid"] == uuid):
                return s
        raise SimError("svm_not_found", "The specified SVM does not exist." if not name else
                       f'SVM "{name}" does not exist.', target="svm.name" if name else "svm.uuid")

    def find_volume(self, svm: str | None, name: str) -> dict[str, Any]:
        """By SVM name (None = unique across SVMs) and volume name."""
        hits = [v for v in self.doc["volumes"].values()
                if v["name"] == name and (svm is None or self.svm_name(v["svm"]) == svm)]
        if len(hits) != 1:
            where = f' in SVM "{svm}"' if svm else ""
            raise SimError("volume_not_found", f'Volume "{name}"{where} does not exist.', target="volume.name")
        return hits[0]

    def volume_by_uuid(self, vu: str) -> dict[str, Any]:
        vol = self.doc["volumes"].get(vu)
        if vol is None:
            raise SimError("not_found", "entry doesn't exist", target="uuid")
        return vol

    def find_snapshot(self, vol: dict[str, Any], name: str | None = None,
                      uuid: str | None = None) -> dict[str, Any]:
        for s in vol["snapshots"]:
            if (name is None or s["name"] == name) and (uuid is None or s["uuid"] == uuid):
                return s
        if uuid is not None and name is None:
            raise SimError("not_found", "entry doesn't exist", target="uuid")
        raise SimError("snapshot_not_found",
                       f'Snapshot copy "{name}" of volume "{vol["name"]}" on Vserver '
                       f'"{self.svm_name(vol["svm"])}" does not exist.', target="name")

    def vol_key(self, vol: dict[str, Any]) -> tuple[str, str]:
        return (self.svm_name(vol["svm"]), vol["name"])
