"""A VM restored from a SnapVault copy on a second (DR) cluster, through ansible-playbook against the lab: two
simulated clusters, cluster- and SVM-peered, each its own controller of the inventory (c1 the primary, c2 the DR
site that holds the vault relationship). The backup playbook with kvmsnap_snapvault_update updates the vault on
c2 (the primary's controller cannot start it); the backup's snapshot is deleted from the primary volume; the
restore playbook finds the copy through c2, stages the manifest from it and brings the VM back with exactly the
backed-up data, the restore relationship made on c1."""

from __future__ import annotations

import pytest
from helpers.module_fixtures import run_module
from helpers.peer_fixtures import DR, peered_configs
from helpers.playbook_lab import Lab, run_output, sha
from helpers.sim_fixtures import start_sim
from test_playbook_vault_restore import AFTER, BEFORE, _mark

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]

SNAP = "kvmsnap-daily_dr1"


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("drvault"), libvirt_system)
    try:
        primary, dr = peered_configs(
            lab.base / "sim1", lab.base / "sim2",
            primary_volumes=[{"name": "vol_ds1", "svm": "svm1", "junction_path": "/vol_ds1", "size": "10G"}],
            vault_policy={"name": "XDPDefault", "type": "vault", "rules": [{"label": "daily", "count": 7}]})
        lab.sims["s2"] = start_sim(lab.base / "sim2", dr)
        lab.sims["s1"] = start_sim(lab.base / "sim1", primary)
        lab.add_guests(("g1", "s1", "vol_ds1"))
        lab.inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("g1")]}},
                                {"c1": lab.controller("s1"), "c2": lab.controller("s2")},
                                kvmsnap_datastores=[lab.datastore("s1", "vol_ds1")])
        yield lab
    finally:
        lab.close()


def test_backup_updates_the_dr_vault_and_restore_brings_the_vm_back_from_it(lab):
    import libvirt
    disk = lab.disk("g1", "s1", "vol_ds1")
    _mark(disk, BEFORE)
    proc = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": SNAP, "kvmsnap_snapvault_update": True})
    assert proc.returncode == 0, run_output(proc)
    vault = lab.sims["s2"].data / "volumes" / "svm_dr" / "vol_ds1_vault" / ".snapshot" / SNAP
    assert (vault / disk.name).read_bytes()[8192:8192 + len(BEFORE)] == BEFORE, run_output(proc)
    backed_up = sha(vault / disk.name)
    mirrors = [m for v in proc.report["volumes"] for m in v.get("snapmirror") or []]
    assert [(m["destination"], m["result"]) for m in mirrors] == [("svm_dr:vol_ds1_vault", "ok")], proc.report
    # the transfer was started on the DR cluster, not on the primary
    dr_calls = [f"{c['method']} {c['path']}" for c in lab.sims["s2"].admin("GET", "calls")["calls"]]
    assert any(c.startswith("POST /api/snapmirror/relationships/") and c.endswith("/transfers") for c in dr_calls)

    _mark(disk, AFTER, 16384)
    gone = run_module("ontap_snapshot", {**lab.sims["s1"].conn("rest"), "volumes": ["svm1:vol_ds1"], "name": SNAP,
                                         "state": "absent"})
    assert not gone.failed, gone
    assert SNAP not in lab.snapshots("s1", "vol_ds1")

    proc = lab.run("restore", lab.inv, {"kvmsnap_restore_vms": [lab.name("g1")], "kvmsnap_restore_snapshot": SNAP,
                                        "kvmsnap_restore_force": True})
    assert proc.returncode == 0, run_output(proc)
    assert f"copy svm_dr:vol_ds1_vault is on cluster {DR}, read through controller c2" in proc.stdout, run_output(proc)
    assert f"c1:svm1:vol_ds1 <- svm_dr:vol_ds1_vault (vault) on cluster {DR} through controller c2" in proc.stdout
    data = disk.read_bytes()
    assert data[8192:8192 + len(BEFORE)] == BEFORE and AFTER not in data
    assert sha(disk) == backed_up
    assert lab.state("g1") == libvirt.VIR_DOMAIN_RUNNING
    assert proc.report["done"] == [lab.name("g1")], proc.report
    # the restore relationship was made on the primary (and deleted again); the DR cluster only was read
    calls1 = [f"{c['method']} {c['path']}" for c in lab.sims["s1"].admin("GET", "calls")["calls"]]
    assert "POST /api/snapmirror/relationships" in calls1
    assert not [r for r in lab.sims["s1"].admin("GET", "state")["relationships"].values() if r.get("restore")]
    dr_calls = [f"{c['method']} {c['path']}" for c in lab.sims["s2"].admin("GET", "calls")["calls"]]
    assert "POST /api/snapmirror/relationships" not in dr_calls
    assert [s for s in lab.snapshots("s1", "vol_ds1") if "prerestore" in s]
