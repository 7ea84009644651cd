"""The NetApp-client tier: the lab's ONTAP simulator driven by NetApp's own clients, unchanged:
the `netapp-ontap` Python package (REST) and modules of the netapp.ontap Ansible collection
(REST and ZAPI), extracted from the pinned `ansible` wheel by tests/lab/netapp-collection
(`make venv` runs it). A request these clients make that the simulator answers differently from
ONTAP is a simulator bug; a request they make that ONTAP would refuse must be refused here too.

Modules run as `python -m ansible_collections.netapp.ontap.plugins.modules.<name> <args.json>`
(one process, no playbook: about half a second each). TLS is verified against the simulator's CA
(REQUESTS_CA_BUNDLE for REST, SSL_CERT_FILE for netapp-lib's ZAPI).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers.sim_fixtures import Sim, start_sim
from sim.simapi import LAB_CONFIG

REPO = Path(__file__).resolve().parents[2]
NETAPP_COLLECTIONS = Path(os.environ.get("KVMSNAP_NETAPP_COLLECTIONS", REPO / "build" / "netapp-collections"))
MODULES = "ansible_collections.netapp.ontap.plugins.modules"
FAST = ["--latency-scale", "0"]

# tests/sim's richer cluster (two SVMs, a LUN, a vault and a mirror relationship: svm1 -> svm_dr, the
# SVM peering they need), with its own name and the mirror initialised.
_VAULT, _MIRROR = LAB_CONFIG["relationships"]
NC_CONFIG: dict[str, Any] = {**LAB_CONFIG, "cluster": {"name": "nc-cluster", "version": "9.13.1"},
                             "relationships": [_VAULT, {**_MIRROR, "state": "snapmirrored", "healthy": True}]}


def _collection_or_fail() -> Path:
    if (NETAPP_COLLECTIONS / "ansible_collections" / "netapp" / "ontap" / "MANIFEST.json").is_file():
        return NETAPP_COLLECTIONS
    msg = f"netapp.ontap is not in {NETAPP_COLLECTIONS}: run `make venv` (tests/lab/netapp-collection)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def nc_sim(tmp_path_factory) -> Any:
    """One simulator (NC_CONFIG, latency off) for a whole test file; tests reset it through `nc`."""
    sim = start_sim(tmp_path_factory.mktemp("nc-sim") / "data", NC_CONFIG, extra_args=FAST)
    yield sim
    sim.stop()


class NetAppLab:
    """The simulator, reset, plus ways to look at it that do not go through NetApp's code."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim

    def state(self) -> dict[str, Any]:
        return self.sim.admin("GET", "state")

    def volume(self, name: str) -> dict[str, Any]:
        return next(v for v in self.state()["volumes"].values() if v["name"] == name)

    def snapshots(self, volume: str) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.volume(volume)["snapshots"]}

    def calls(self) -> list[dict[str, Any]]:
        return self.sim.admin("GET", "calls")["calls"]

    def refused(self) -> list[str]:
        """Calls the simulator answered with an error (REST >= 400, ZAPI failed)."""
        return [f"{c['method']} {c['path']} {c.get('api') or ''} -> {c['status']} {c.get('code') or c.get('errno')}"
                for c in self.calls() if (c["status"] or 0) >= 400 or c.get("zapi_status") == "failed"]

    def run(self, module: str, args: dict[str, Any], transport: str = "rest", check_mode: bool = False,
            tmp: Path | None = None) -> dict[str, Any]:
        """Run netapp.ontap's MODULE with ARGS against the simulator; the module's JSON result."""
        root = _collection_or_fail()
        full = {"hostname": self.sim.host, "http_port": self.sim.port, "https": True, "validate_certs": True,
                "username": "admin", "password": "netapp123",
                "use_rest": "always" if transport == "rest" else "never", **args}
        if check_mode:
            full["_ansible_check_mode"] = True
        argfile = (tmp or self.sim.data.parent) / f"nc-args-{module}.json"
        argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": full}))
        env = {**os.environ, "PYTHONPATH": str(root), "REQUESTS_CA_BUNDLE": self.sim.ca_file,
               "SSL_CERT_FILE": self.sim.ca_file, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run([sys.executable, "-m", f"{MODULES}.{module}", str(argfile)], env=env, check=False,
                              capture_output=True, text=True, timeout=120)
        out = proc.stdout
        try:
            result = json.loads(out[out.index("{"):])
        except ValueError:
            raise AssertionError(f"{module}: no JSON result (rc {proc.returncode})\n{out}\n{proc.stderr}") from None
        result.pop("invocation", None)
        return result

    def ok(self, module: str, args: dict[str, Any], transport: str = "rest", **kw: Any) -> dict[str, Any]:
        result = self.run(module, args, transport, **kw)
        assert not result.get("failed"), f"{module} ({transport}) failed: {result.get('msg')}; " \
                                         f"refused calls: {self.refused()}"
        return result

    def rest(self, method: str, path: str, body: Any = None, query: str = "") -> tuple[int, Any]:
        """A REST call with the standard library (not NetApp's code): (status, JSON body)."""
        url = f"{self.sim.url}{path}" + (f"?{query}" if query else "")
        token = base64.b64encode(b"admin:netapp123").decode()
        req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"})
        try:
            with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=self.sim.ca_file),
                                        timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def make_cg(self, name: str = "cg_ds", volumes: tuple[str, ...] = ("vol_ds1", "vol_ds2")) -> None:
        """A consistency group over VOLUMES, made with a plain REST call (not NetApp's code)."""
        status, body = self.rest("POST", "/api/application/consistency-groups",
                                 {"name": name, "svm": {"name": "svm1"},
                                  "volumes": [{"name": v, "provisioning_options": {"action": "add"}} for v in volumes]},
                                 "return_timeout=30")
        assert status in (200, 201), body


@pytest.fixture
def nc(nc_sim: Sim) -> NetAppLab:
    """NC_CONFIG, freshly reset (data, faults, call log)."""
    nc_sim.admin("POST", "reset")
    return NetAppLab(nc_sim)
