"""Start the lab's ONTAP simulator (tests/lab/ontap-sim) for a test session or a single test."""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SIM = REPO / "tests" / "lab" / "ontap-sim"


@dataclass
class Sim:
    url: str
    ca_file: str
    pid: int
    data: Path
    proc: subprocess.Popen

    @property
    def host(self) -> str:
        return self.url.split("//", 1)[1].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def conn(self, transport: str = "rest", username: str = "admin", password: str = "netapp123",
             cert: bool = False) -> dict[str, Any]:
        """Connection options of the ontap_* modules for this simulator; cert=True logs in as
        USERNAME with a client certificate issued by the simulator's CA instead of a password."""
        if cert:
            issued = self.admin("POST", "client-cert", {"user": username})
            return {"hostname": self.host, "port": self.port, "cert_file": issued["cert_file"],
                    "key_file": issued["key_file"], "ca_path": self.ca_file, "validate_certs": True,
                    "transport": transport}
        return {"hostname": self.host, "port": self.port, "username": username, "password": password,
                "ca_path": self.ca_file, "validate_certs": True, "transport": transport}

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call the simulator's admin endpoint, e.g. sim.admin("POST", "faults", {...}),
        sim.admin("GET", "calls"), sim.admin("POST", "latency", {"scale": 0}); see tests/lab/README.md."""
        url = f"{self.url}/_sim/{path.lstrip('/').removeprefix('_sim/')}"
        token = base64.b64encode(b"admin:netapp123").decode()
        req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"})
        ctx = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    @contextmanager
    def latency(self, kinds: dict[str, float], scale: float | None = None) -> Iterator[None]:
        """Inside the block the call KINDS take these seconds (and every latency is multiplied by SCALE, if
        given); afterwards the table is as before, including kinds it did not name yet (back to `default`)."""
        before = self.admin("GET", "latency")
        change: dict[str, Any] = {"kinds": kinds}
        if scale is not None:
            change["scale"] = scale
        self.admin("POST", "latency", change)
        try:
            yield
        finally:
            default = float(before["kinds"].get("default", 0.0))
            self.admin("POST", "latency", {"scale": before["scale"],
                                           "kinds": {**{k: default for k in kinds}, **before["kinds"]}})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_sim(data: Path, config: dict | str | Path | None = None, port: int = 0,
              extra_args: list[str] | None = None) -> Sim:
    """Start a simulator on DATA; CONFIG is a dict (written as YAML), a path, or None (default lab)."""
    data.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(SIM), "--data", str(data), "--port", str(port)]
    if isinstance(config, dict):
        cfg = data.parent / f"{data.name}-config.yml"
        cfg.write_text(yaml.safe_dump(config))
        cmd += ["--config", str(cfg)]
    elif config is not None:
        cmd += ["--config", str(config)]
    cmd += extra_args or []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True, env=os.environ.copy())
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise RuntimeError(f"ontap-sim exited with {proc.returncode} before it was ready")
    info = json.loads(line)
    return Sim(url=info["url"], ca_file=info["ca_file"], pid=info["pid"], data=data, proc=proc)


@pytest.fixture(scope="session")
def ontap_sim(tmp_path_factory):
    """The default lab cluster (ONTAP 9.13.1, admin/netapp123, svm1 with vol_ds1 and vol_ds2)."""
    sim = start_sim(tmp_path_factory.mktemp("ontap-sim") / "data")
    yield sim
    sim.stop()


@pytest.fixture
def sim_factory(tmp_path):
    """Start simulators with a custom cluster config; all are stopped after the test."""
    started: list[Sim] = []

    def factory(config: dict | None = None, name: str = "sim", **kw) -> Sim:
        sim = start_sim(tmp_path / name, config, **kw)
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()
