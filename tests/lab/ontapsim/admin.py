"""The simulator's own admin endpoint under /_sim/ (faults, latency, call log, reset)."""

from __future__ import annotations

import json
from typing import Any

from .auth import Auth
from .certs import issue_client_cert
from .faults import Knobs
from .ops import Ops
from .state import State


class AdminApi:
    def __init__(self, state: State, ops: Ops, knobs: Knobs, auth: Auth) -> None:
        self.auth = auth
        self.st = state
        self.ops = ops
        self.knobs = knobs

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        route = (method, path.rstrip("/"))
        try:
            if route == ("GET", "/_sim/faults"):
                return 200, {"faults": self.knobs.list_faults()}
            if route == ("POST", "/_sim/faults"):
                specs = body if isinstance(body, list) else [body]
                return 201, {"faults": [self.knobs.add_fault(dict(s)).__dict__ for s in specs]}
            if route == ("DELETE", "/_sim/faults"):
                self.knobs.clear_faults()
                return 200, {"faults": []}
            if route == ("GET", "/_sim/calls"):
                return 200, {"calls": self.knobs.list_calls(int(query.get("since", "0") or 0))}
            if route == ("DELETE", "/_sim/calls"):
                self.knobs.clear_calls()
                return 200, {"calls": []}
            if route == ("GET", "/_sim/latency"):
                with self.knobs.lock:
                    return 200, {"scale": self.knobs.scale, "kinds": dict(self.knobs.latency)}
            if route == ("POST", "/_sim/latency"):
                self.knobs.set_latency(body or {})
                with self.knobs.lock:
                    return 200, {"scale": self.knobs.scale, "kinds": dict(self.knobs.latency)}
            if route == ("POST", "/_sim/busy"):
                return self._busy(body or {})
            if route == ("POST", "/_sim/snapshot-omit"):
                return self._snapshot_omit(body or {})
            if route == ("POST", "/_sim/reset"):
                self.ops.omit.clear()
                self.st.reset()
                self.knobs.clear_faults()
                self.knobs.clear_calls()
                return 200, {"reset": True}
            if route == ("POST", "/_sim/client-cert"):
                user = (body or {}).get("user", "")
                if user not in self.auth.users:
                    raise ValueError(f"no such user {user!r}")
                cert, key = issue_client_cert(self.st.data_dir, user)
                return 201, {"user": user, "cert_file": str(cert), "key_file": str(key)}
            if route == ("GET", "/_sim/state"):
                with self.st.lock:
                    return 200, json.loads(json.dumps(self.st.doc))
            if route == ("GET", "/_sim/info"):
                with self.st.lock:
                    return 200, {"storage": self.st.storage.kind, "data_dir": str(self.st.data_dir),
                                 "version": ".".join(map(str, self.st.version)),
                                 "cluster": self.st.doc["cluster"]["name"]}
        except (ValueError, TypeError, KeyError) as exc:
            return 400, {"error": {"message": str(exc), "code": "2"}}
        return 404, {"error": {"message": f"no admin call {method} {path}", "code": "4"}}

    def _snapshot_omit(self, body: dict[str, Any]) -> tuple[int, Any]:
        """Fault: the next snapshots of {svm, volume} do not hold {paths} (e.g. a LUN moved away meanwhile);
        an empty list clears it."""
        paths = body.get("paths", [])
        if not isinstance(paths, list):
            raise ValueError("paths must be a list")
        with self.st.lock:
            vol = self.st.find_volume(body.get("svm"), body["volume"])
            key = self.st.vol_key(vol)
            if paths:
                self.ops.omit[key] = [str(p) for p in paths]
            else:
                self.ops.omit.pop(key, None)
            return 200, {"volume": vol["name"], "omit": paths}

    def _busy(self, body: dict[str, Any]) -> tuple[int, Any]:
        """Set a snapshot's owners (non-empty = busy, as when SnapMirror or a clone holds it)."""
        with self.st.lock:
            vol = self.st.find_volume(body.get("svm"), body["volume"])
            snap = self.st.find_snapshot(vol, body["snapshot"])
            owners = body.get("owners", ["snapmirror"])
            if not isinstance(owners, list):
                raise ValueError("owners must be a list")
            self.ops.set_owners(vol, snap, owners)
            return 200, {"volume": vol["name"], "snapshot": snap["name"], "owners": owners}
