"""Cluster and SVM peering between two simulator processes (a primary site and a DR site).

Each simulated cluster is one process that alone writes its state (DIR/state.json, replaced atomically after
every change) and its volumes (DIR/volumes/). A peer is another simulator's data directory, named in the
cluster YAML (`peers`, tests/lab/README.md). A process only ever READS its peer: the peer's state.json (always
a complete document, thanks to the atomic replace) and its snapshot directories (read-only once made). Every
cross-cluster step ONTAP takes that the simulator models is a read on one side and a write on the other:

- a SnapMirror/SnapVault update runs on the destination cluster and pulls the snapshot from the peer's source;
- a restore relationship lives on the primary cluster and its transfer reads the peer's vault snapshot;
- on the source cluster, `list_destinations_only=true` lists the relationships the peer holds.

So no lock spans two processes and neither can corrupt the other. A peer whose simulator is not running (no
live DIR/running.json) is unavailable, as an unreachable cluster is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SimError
from .storage import SNAPDIR

# DIR/RUNNING: {"pid", "url"} of the simulator serving DIR, written at start and removed at exit
RUNNING = "running.json"


@dataclass
class PeerView:
    """The peer cluster's state as last saved; duck-types State for the record builders (doc, svm_name)."""
    name: str
    data_dir: Path
    doc: dict[str, Any]

    def svm_name(self, svm_uuid: str) -> str:
        return self.doc["svms"][svm_uuid]["name"]

    def svm_uuid(self, name: str) -> str | None:
        return next((u for u, s in self.doc["svms"].items() if s["name"] == name), None)

    def vol_key(self, vol: dict[str, Any]) -> tuple[str, str]:
        return (self.svm_name(vol["svm"]), vol["name"])

    def find_volume(self, svm: str, name: str) -> dict[str, Any] | None:
        return next((v for v in self.doc["volumes"].values()
                     if v["name"] == name and self.svm_name(v["svm"]) == svm), None)

    def snapshot_dir(self, svm: str, volume: str, snapshot: str) -> Path:
        return self.data_dir / "volumes" / svm / volume / SNAPDIR / snapshot


@dataclass
class Peer:
    """One peered cluster: its name, its data directory and the SVM peerings {local SVM: peer SVM}."""
    name: str
    data_dir: Path
    svms: dict[str, str] = field(default_factory=dict)

    def view(self) -> PeerView | None:
        """The peer's saved state, or None while it is unavailable: its simulator is not running (no live
        RUNNING file), it has no state yet, or another cluster lives there."""
        try:
            pid = int(json.loads((self.data_dir / RUNNING).read_text())["pid"])
            os.kill(pid, 0)
            doc = json.loads((self.data_dir / "state.json").read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if doc.get("cluster", {}).get("name") != self.name:
            return None
        return PeerView(self.name, self.data_dir, doc)


class Peers:
    def __init__(self, specs: list[dict[str, Any]] | None) -> None:
        self.by_name: dict[str, Peer] = {}
        for spec in specs or []:
            svms = {str(p["local"]): str(p["peer"]) for p in spec.get("svms") or []}
            self.by_name[spec["cluster"]] = Peer(spec["cluster"], Path(spec["data"]).resolve(), svms)

    def __iter__(self):
        return iter(self.by_name.values())

    def owner_of(self, svm: str) -> Peer | None:
        """The peer cluster whose SVM SVM is peered with one of ours (peer SVM names are unique here, as
        ONTAP requires a local alias when they are not)."""
        return next((p for p in self.by_name.values() if svm in p.svms.values()), None)

    def peered(self, local_svm: str, peer: Peer, peer_svm: str) -> bool:
        return peer.svms.get(local_svm) == peer_svm

    def view(self, name: str) -> PeerView:
        """The peer NAME's state; an error as ONTAP gives when the peer cluster cannot be reached."""
        peer = self.by_name.get(name)
        view = peer.view() if peer else None
        if view is None:
            raise SimError("transfer_failed", f'Cluster "{name}" is not reachable: the cluster peer relationship '
                                              "is unavailable.")
        return view
