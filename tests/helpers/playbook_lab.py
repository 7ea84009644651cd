"""The playbook lab: ONTAP simulators, minimal lab guests whose disks live in the simulators' volumes, and
ansible-playbook runs of kvmsnap.core.<playbook> against them, as on the KVM host (the lab daemon's namespace).

Lab(base, conn)          a lab in directory BASE on the lab's libvirtd connection CONN (the libvirt_system fixture)
Lab.one_volume(tag)      simulator s1 with svm1:vol_ds1 (datastore lab.ds1) and minimal guests on it
Lab.start_sim(key, ...)  a simulator with svm1 and its volumes; Lab.datastore(sim, volume) its datastore entry
Lab.add_guests(...)      minimal guests with their disks in a simulator's volume, started side by side
Lab.run(playbook, inv)   ansible-playbook; the CompletedProcess carries .report, the run's JSON report
run_output(proc)         the tail of a run's output, for assertion messages
sha(path)                a file's SHA-256
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from helpers.guest_fixtures import SYSTEM_URI
from helpers.sim_fixtures import Sim, start_sim

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "tests" / "lab") not in sys.path:
    sys.path.insert(0, str(REPO / "tests" / "lab"))

import guestlab
from guestlab import labd

PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
URI = SYSTEM_URI


class Lab:
    def __init__(self, base: Path, conn) -> None:
        self.base = base
        self.conn = conn
        self.sims = {}
        self.doms = {}
        self.prefix = "%sply-" % guestlab.run_prefix()

    def one_volume(self, tag: str, guests: tuple[str, ...] = ("g1", "g2")) -> Lab:
        """Simulator s1 with the single volume vol_ds1 (datastore ds1) and minimal guests GUESTS on it."""
        self.prefix = "%s%s-" % (guestlab.run_prefix(), tag)
        self.start_sim("s1")
        self.add_guests(*((key, "s1", "vol_ds1") for key in guests))
        self.ds1 = self.datastore("s1", "vol_ds1")
        return self

    def start_sim(self, key: str = "s1", volumes: tuple[str, ...] = ("vol_ds1",), size: str = "10G",
                  lif: tuple[str, str] = ("svm1_data1", "127.0.0.1"), svms: tuple[dict, ...] = (), **config) -> Sim:
        """Simulator KEY (data in <base>/sim<n>): svm1 with the data LIF (name, address) LIF and VOLUMES of SIZE,
        the further SVMS, and the other cluster CONFIG keys as given (cluster, users, roles, policies,
        relationships; tests/lab/README.md)."""
        config.update(svms=[{"name": "svm1", "lifs": [{"name": lif[0], "address": lif[1]}]}, *svms],
                      volumes=[{"name": v, "svm": "svm1", "junction_path": "/" + v, "size": size} for v in volumes])
        self.sims[key] = start_sim(self.base / key.replace("s", "sim", 1), config)
        return self.sims[key]

    def datastore(self, sim: str, volume: str, controller: str = "c1") -> dict:
        """The kvmsnap_datastores entry of svm1:VOLUME on simulator SIM, reached as controller CONTROLLER."""
        return {"path": str(self.vol(sim, volume)), "controller": controller, "svm": "svm1", "volume": volume}

    def close(self) -> None:
        """Destroy and undefine this lab's guests, stop its simulators."""
        guestlab.cleanup_prefix(self.conn, self.prefix)
        for sim in self.sims.values():
            sim.stop()

    def vol(self, sim: str, volume: str) -> Path:
        return self.sims[sim].data / "volumes" / "svm1" / volume

    def add_guest(self, key: str, sim: str, volume: str):
        name = self.prefix + key
        self.doms[key] = guestlab.define_minimal_guest(self.conn, name, str(self.vol(sim, volume)))
        return name

    def add_guests(self, *placements: tuple[str, str, str]) -> list[str]:
        """add_guest(key, sim, volume) for each placement, the guests started side by side."""
        with ThreadPoolExecutor(max_workers=max(1, min(len(placements), 8))) as pool:
            return list(pool.map(lambda placement: self.add_guest(*placement), placements))

    def name(self, key: str) -> str:
        return self.prefix + key

    def disk(self, key: str, sim: str, volume: str) -> Path:
        return self.vol(sim, volume) / ("%s.img" % self.name(key))

    def snapshots(self, sim: str, volume: str) -> list[str]:
        snapdir = self.vol(sim, volume) / ".snapshot"
        return sorted(os.listdir(snapdir)) if snapdir.exists() else []

    def state(self, key: str) -> int:
        return self.conn.lookupByName(self.name(key)).state()[0]

    def controller(self, sim: str, transport: str = "rest") -> dict:
        s = self.sims[sim]
        return {"ontap_hostname": s.host, "ontap_port": s.port, "ontap_username": "admin",
                "ontap_password": "netapp123", "ontap_ca_path": s.ca_file, "ontap_transport": transport}

    def inventory(self, kvm_hosts: dict, controllers: dict, **vars_) -> Path:
        for hv in kvm_hosts.values():
            hv.setdefault("ansible_connection", "local")
            hv.setdefault("kvmsnap_libvirt_uri", URI)
        inv = {"all": {"children": {"kvm_hosts": {"hosts": kvm_hosts}, "ontap_controllers": {"hosts": controllers}},
                       "vars": {"ansible_python_interpreter": sys.executable,
                                "kvmsnap_state_dir": str(self.base / "state"),
                                "kvmsnap_report_dir": str(self.base / "reports"),
                                "kvmsnap_manifest_key_file": str(self.base / "manifest.key"), **vars_}}}
        path = self.base / ("inv-%d.yml" % time.monotonic_ns())
        path.write_text(yaml.safe_dump(inv))
        return path

    def run(self, playbook: str, inventory: Path, extra: dict | None = None, check: bool = False,
            verbose: str = ""):
        cmd = [PLAYBOOK, "-i", str(inventory), "kvmsnap.core.%s" % playbook] + ([verbose] if verbose else [])
        if extra:
            cmd += ["-e", json.dumps(extra)]
        if check:
            cmd.append("--check")
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
                   ANSIBLE_HOST_KEY_CHECKING="false", ANSIBLE_SHOW_CUSTOM_STATS="true")
        started = time.time()
        # the playbook runs as on the KVM host: in the lab daemons' mount namespace
        proc = subprocess.run(labd.as_on_the_kvm_host(cmd), capture_output=True, text=True, env=env, timeout=300,
                              check=False)
        proc.report = self.report(playbook, since=started)
        return proc

    def report(self, kind: str, since: float) -> dict | None:
        files = [p for p in (self.base / "reports").glob("%s-*.json" % kind) if p.stat().st_mtime >= since - 1]
        if not files:
            return None
        return json.loads(max(files, key=lambda p: p.stat().st_mtime).read_text())


def run_output(proc) -> str:
    return "rc=%s\n%s\n%s" % (proc.returncode, proc.stdout[-6000:], proc.stderr[-2000:])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
