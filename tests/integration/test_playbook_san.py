"""Backup and restore of a VM whose disk is an ONTAP LUN (SAN), through the playbooks.

The simulator's LUN /vol/vol_san/lun1 is a file in its volume directory; a loop device over it is the VM's
block disk, mapped with Snap Creator's KVM_VM_MAPPING form (kvmsnap_vm_mapping). The manifest lives only in
the local catalog (a LUN has no file system for it), the restore is a LUN restore from the snapshot, and the
deleted VM is defined again from the catalog's manifest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers.guest_fixtures import SYSTEM_URI
from helpers.sim_fixtures import start_sim

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
import guestlab

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def _run(playbook: str, inventory: Path, extra: dict | None = None):
    cmd = [PLAYBOOK, "-i", str(inventory), "kvmsnap.core.%s" % playbook]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false"))


def _report(base: Path, kind: str) -> dict:
    files = sorted((base / "reports").glob("%s-*.json" % kind), key=lambda p: p.stat().st_mtime)
    return json.loads(files[-1].read_text())


@pytest.fixture
def san_vm(libvirt_system, tmp_path):
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup for a loop device over the LUN file")
    sim = start_sim(tmp_path / "sim", {
        "volumes": [{"name": "vol_san", "svm": "svm1", "junction_path": None, "size": "1G"}],
        "luns": [{"path": "/vol/vol_san/lun1", "svm": "svm1", "size": "8M", "serial_number": "D31sh#DQGQUu",
                  "os_type": "linux"}]})
    lun = tmp_path / "sim" / "volumes" / "svm1" / "vol_san" / "lun1"
    boot = guestlab.make_boot_sector(str(tmp_path / "boot.img"))
    with open(lun, "r+b") as fh:
        fh.write(Path(boot).read_bytes())
    loop = subprocess.run(["losetup", "-f", "--show", str(lun)], capture_output=True, text=True,
                          check=True).stdout.strip()
    name = "%ssan1" % guestlab.run_prefix()
    xml = guestlab.minimal_guest_xml(name, boot).replace("<disk type='file'", "<disk type='block'").replace(
        '<source file="%s"/>' % os.path.abspath(boot), '<source dev="%s"/>' % loop)
    assert loop in xml
    dom = libvirt_system.defineXML(xml)
    dom.create()
    kvm_hosts = {"hosts": {"kvm1": {"ansible_connection": "local", "kvmsnap_vms": [name], "kvmsnap_libvirt_uri": SYSTEM_URI,
                                    "kvmsnap_vm_mapping": "%s:c1:/vol/vol_san/lun1;" % name}}}
    controllers = {"hosts": {"c1": {"ontap_hostname": sim.host, "ontap_port": sim.port, "ontap_username": "admin",
                                    "ontap_password": "netapp123", "ontap_ca_path": sim.ca_file}}}
    common = {"ansible_python_interpreter": sys.executable, "kvmsnap_state_dir": str(tmp_path / "state"),
              "kvmsnap_report_dir": str(tmp_path / "reports"), "kvmsnap_manifest_key_file": str(tmp_path / "manifest.key")}
    inv = {"all": {"children": {"kvm_hosts": kvm_hosts, "ontap_controllers": controllers}, "vars": common}}
    (tmp_path / "inv.yml").write_text(yaml.safe_dump(inv))
    try:
        yield {"name": name, "lun": lun, "boot": Path(boot), "inv": tmp_path / "inv.yml", "base": tmp_path,
               "conn": libvirt_system, "sim": sim}
    finally:
        guestlab.cleanup_prefix(libvirt_system, name)
        subprocess.run(["losetup", "-d", loop], check=False)
        sim.stop()


def test_san_vm_backup_and_restore_after_deletion(san_vm):
    import libvirt
    proc = _run("backup", san_vm["inv"])
    assert proc.returncode == 0, proc.stdout[-4000:]
    rep = _report(san_vm["base"], "backup")
    assert rep["status"] == "ok" and rep["done"] == [san_vm["name"]]
    assert [(v["volume"], v["ok"]) for v in rep["volumes"]] == [("vol_san", True)]
    uuid = san_vm["conn"].lookupByName(san_vm["name"]).UUIDString()
    catalog = san_vm["base"] / "state" / "catalog" / rep["snapshot"] / uuid / "manifest.json"
    assert json.loads(catalog.read_text())["disks"][0]["lun"] == "/vol/vol_san/lun1"

    guestlab.destroy_and_undefine(san_vm["conn"].lookupByName(san_vm["name"]))
    with open(san_vm["lun"], "r+b") as fh:  # damage the LUN's boot sector
        fh.write(b"\0" * 512)
    time.sleep(0.1)
    proc = _run("restore", san_vm["inv"], {"kvmsnap_restore_vms": "all"})
    assert proc.returncode == 0, proc.stdout[-4000:]
    rrep = _report(san_vm["base"], "restore")
    assert rrep["status"] == "ok" and rrep["done"] == [san_vm["name"]]
    assert rrep["volumes"][0]["method"] == "rest_lun_clone"
    assert san_vm["lun"].read_bytes()[:512] == san_vm["boot"].read_bytes()[:512]
    assert san_vm["conn"].lookupByName(san_vm["name"]).state()[0] == libvirt.VIR_DOMAIN_RUNNING


def _snapshot_names(san_vm) -> list:
    snapdir = san_vm["lun"].parent / ".snapshot"
    return sorted(os.listdir(snapdir)) if snapdir.is_dir() else []


def test_san_vm_whose_lun_is_not_in_the_snapshot_is_not_protected(san_vm):
    """The LUN is checked in the snapshot through ONTAP (verify-before-ok, docs/dev/faults.md#verify-before-ok):
    a snapshot of vol_san that does not hold lun1 (simulator fault: the LUN left the volume's snapshot) is no
    backup of the VM; the report names the LUN path and says NOT protected."""
    san_vm["sim"].admin("POST", "snapshot-omit", {"svm": "svm1", "volume": "vol_san", "paths": ["lun1"]})
    proc = _run("backup", san_vm["inv"])
    assert proc.returncode != 0, proc.stdout[-4000:]
    rep = _report(san_vm["base"], "backup")
    assert rep["status"] == "failed" and rep["done"] == [] and rep["not_done"] == [san_vm["name"]], rep
    vm = rep["vms"][0]
    missing = "c1:svm1:/vol/vol_san/.snapshot/%s/lun1" % rep["snapshot"]
    assert vm["details"]["verified"] is False and missing in vm["details"]["missing"], vm
    assert "LUN svm1:/vol/vol_san/lun1 on c1" in vm["error"] and "not in the snapshot" in vm["error"], vm
    assert "NOT protected %s" % san_vm["name"] in proc.stdout, proc.stdout[-4000:]
    # the VM runs on; its LUN is untouched
    assert san_vm["conn"].lookupByName(san_vm["name"]).isActive()


def test_san_restore_refused_when_the_lun_is_not_in_the_snapshot(san_vm):
    """Restore pre-flight: a LUN to restore that the snapshot does not hold refuses the restore before the VM is
    stopped and before the safety snapshot (docs/dev/faults.md#verify-before-ok)."""
    proc = _run("backup", san_vm["inv"])
    assert proc.returncode == 0, proc.stdout[-4000:]
    snap = _report(san_vm["base"], "backup")["snapshot"]
    in_snap = san_vm["lun"].parent / ".snapshot" / snap / "lun1"
    in_snap.parent.chmod(0o755)
    in_snap.unlink()  # as root: the snapshot no longer holds the LUN
    before = _snapshot_names(san_vm)
    live = san_vm["lun"].read_bytes()[:4096]
    proc = _run("restore", san_vm["inv"], {"kvmsnap_restore_vms": "all", "kvmsnap_restore_force": True,
                                           "kvmsnap_shutdown_timeout": 3})
    assert proc.returncode != 0, proc.stdout[-4000:]
    expect = "kvmsnap restore pre-flight: kvm1: VM %s is not in snapshot %s: c1:svm1:/vol/vol_san/.snapshot/%s/lun1" % (
        san_vm["name"], snap, snap)
    assert expect in proc.stdout, proc.stdout[-4000:]
    assert "no VM was stopped, no safety snapshot was made" in proc.stdout
    assert san_vm["conn"].lookupByName(san_vm["name"]).isActive()
    assert _snapshot_names(san_vm) == before  # no kvmsnap-prerestore_ snapshot
    assert san_vm["lun"].read_bytes()[:4096] == live


def test_san_lun_check_over_zapi(san_vm):
    """The same LUN check over ZAPI (file-get-file-info): the LUN missing from the snapshot makes the VM NOT
    protected (docs/dev/faults.md#verify-before-ok)."""
    san_vm["sim"].admin("POST", "snapshot-omit", {"svm": "svm1", "volume": "vol_san", "paths": ["lun1"]})
    proc = _run("backup", san_vm["inv"], {"ontap_transport": "zapi"})
    assert proc.returncode != 0, proc.stdout[-4000:]
    rep = _report(san_vm["base"], "backup")
    assert rep["done"] == [] and rep["not_done"] == [san_vm["name"]], rep
    assert "c1:svm1:/vol/vol_san/.snapshot/%s/lun1" % rep["snapshot"] in rep["vms"][0]["details"]["missing"]
    calls = san_vm["sim"].admin("GET", "calls")["calls"]
    assert any(c.get("api") == "file-get-file-info" for c in calls)
    assert not any("/files/" in c["path"] for c in calls)
