"""What the backup and restore playbooks report, in the cases where the report used to be wrong.

Real libvirtd with minimal boot-sector guests (no guest agent channel) whose disks live in the ONTAP
simulator's volumes. The inventory's KVM host is named differently from the OS hostname. The tests run in
order and share the lab:

- a busy snapshot during the prune and a vault relationship whose policy has no rule for the label: the
  report keeps the prune and SnapMirror results with their reasons, and neither task shows as skipped;
- the snapshot comment's host= is the inventory name, and a restore query by that host selects it;
- freeze mode on a VM without a guest agent, crash consistency allowed: the run passes, reports `crash`,
  attempts no thaw, confirms the snapshot good with consistency=crash and leaves no lock behind;
- the restore report says whether each VM existed before the restore, and how the running one was shut down.
"""

from __future__ import annotations

import socket
import time

import libvirt
import pytest
from helpers.playbook_lab import Lab, guestlab, run_output

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import parse_comment

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]
KVM = "kvm-inventory-alias"


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    assert socket.gethostname() != KVM
    base = tmp_path_factory.mktemp("pbreport")
    lab = Lab(base, libvirt_system)
    lab.prefix = "%srpt-" % guestlab.run_prefix()
    try:
        vols = ("vol_ds1", "vol_ds2")
        lab.start_sim("s1", vols, svms=({"name": "svm_dr", "data_lifs": ["127.0.0.3"]},),
                      # a vault whose policy has no rule for the backup's label (daily)
                      policies=[{"name": "VaultWeeklyOnly", "type": "vault", "labels": ["weekly"]}],
                      relationships=[{"source": "svm1:vol_ds1", "destination": "svm_dr:vol_ds1_vault",
                                      "policy": "VaultWeeklyOnly", "state": "snapmirrored", "healthy": True}])
        lab.add_guests(("g1", "s1", "vol_ds1"), ("g2", "s1", "vol_ds2"))
        dss = [lab.datastore("s1", v) for v in vols]
        lab.inv = lab.inventory({KVM: {"kvmsnap_vms": [lab.name("g1"), lab.name("g2")]}},
                                {"c1": lab.controller("s1")}, kvmsnap_datastores=dss, kvmsnap_retention="daily:1")
        yield lab
    finally:
        lab.close()


def snapshot(lab, volume, name):
    client = connect(dict(lab.sims["s1"].conn(), timeout=30, retries=1, cert_file=None, key_file=None), "test")
    return client.get_snapshot("svm1", volume, name)


def task_lines(stdout: str, task: str) -> str:
    """The output of the task named TASK (up to the next task header)."""
    part = stdout.split("TASK [kvmsnap.core.backup : %s" % task, 1)[1]
    return part.split("\nTASK [", 1)[0]


def test_busy_prune_and_unlabelled_vault_stay_in_the_report(lab):
    first = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": "kvmsnap-daily_rpt1", "kvmsnap_quiesce_mode": "suspend"})
    assert first.returncode == 0, run_output(first)
    # rpt1 is held (as by SnapMirror): the prune of the next backup must keep it and say why
    lab.sims["s1"].admin("POST", "busy", {"svm": "svm1", "volume": "vol_ds1", "snapshot": "kvmsnap-daily_rpt1",
                                          "owners": ["snapmirror"]})
    try:
        proc = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": "kvmsnap-daily_rpt2",
                                           "kvmsnap_quiesce_mode": "suspend", "kvmsnap_snapvault_update": True})
    finally:
        lab.sims["s1"].admin("POST", "busy", {"svm": "svm1", "volume": "vol_ds1",
                                              "snapshot": "kvmsnap-daily_rpt1", "owners": []})
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "warning", rep
    vols = {v["volume"]: v for v in rep["volumes"]}
    ds1 = vols["vol_ds1"]
    assert ds1["prune_skipped"] == [{"name": "kvmsnap-daily_rpt1", "reason": "owned by snapmirror"}], ds1
    assert [(m["destination"], m["result"]) for m in ds1["snapmirror"]] == [("svm_dr:vol_ds1_vault", "skipped")], ds1
    assert "policy VaultWeeklyOnly has no rule for label daily" in ds1["snapmirror"][0]["error"]
    # vol_ds2's rpt1 was not busy: pruned on all the set's volumes or none -> kept there too (a set is one backup)
    assert vols["vol_ds2"]["prune_skipped"][0]["name"] == "kvmsnap-daily_rpt1"
    assert any("pruning skipped kvmsnap-daily_rpt1" in w for w in rep["warnings"]), rep["warnings"]
    for task in ("Update SnapMirror/SnapVault relationships", "Prune this collection's snapshots"):
        out = task_lines(proc.stdout, task)
        assert "skipping" not in out and ("ok: [%s" % KVM) in out, out


def test_snapshot_comment_names_the_inventory_host_and_restore_selects_by_it(lab):
    meta = parse_comment(snapshot(lab, "vol_ds1", "kvmsnap-daily_rpt2")["comment"])
    assert meta["host"] == KVM, meta
    query = "[?host=='%s' && state=='good'] | [-1]" % KVM
    proc = lab.run("restore", lab.inv, {"kvmsnap_restore_vms": [lab.name("g1")], "kvmsnap_restore_snapshot": query,
                                        "kvmsnap_restore_force": True}, check=True)
    assert proc.returncode == 0, run_output(proc)
    assert "would restore %s from kvmsnap-daily_rpt2" % lab.name("g1") in proc.stdout, run_output(proc)


def test_freeze_without_agent_is_crash_consistent_when_allowed(lab):
    extra = {"kvmsnap_quiesce_mode": "freeze", "kvmsnap_allow_crash_consistent": True}
    t0 = time.monotonic()
    proc = lab.run("backup", lab.inv, dict(extra, kvmsnap_snapshot_name="kvmsnap-daily_rpt3"))
    first_s = time.monotonic() - t0
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert rep["snapshot"] == "kvmsnap-daily_rpt3" and sorted(rep["done"]) == sorted(
        lab.name(k) for k in ("g1", "g2")), rep
    for vm in rep["vms"]:
        assert vm["consistency"] == "crash" and vm["released"] is True, vm
        assert "thaw" not in str(vm).lower(), vm
    assert [v["snapshot"] for v in rep["volumes"]] == ["kvmsnap-daily_rpt3"] * 2
    for vol in ("vol_ds1", "vol_ds2"):
        meta = parse_comment(snapshot(lab, vol, "kvmsnap-daily_rpt3")["comment"])
        assert meta["state"] == "good" and meta["consistency"] == "crash", meta
    assert all(lab.state(k) == libvirt.VIR_DOMAIN_RUNNING for k in ("g1", "g2"))
    # no lock or open fence left: an immediate second run goes ahead at once
    t0 = time.monotonic()
    again = lab.run("backup", lab.inv, dict(extra, kvmsnap_snapshot_name="kvmsnap-daily_rpt4"))
    assert again.returncode == 0, run_output(again)
    assert "is fencing it" not in again.stdout and "lock_takeovers" not in str(again.report.get("notes"))
    assert again.report["status"] in ("ok", "warning") and again.report["snapshot"] == "kvmsnap-daily_rpt4"
    assert time.monotonic() - t0 < first_s + 10, (first_s, time.monotonic() - t0)


def test_restore_report_says_what_existed_and_how_it_was_shut_down(lab):
    disk = lab.disk("g2", "s1", "vol_ds2")
    guestlab.destroy_and_undefine(lab.conn.lookupByName(lab.name("g2")))
    disk.unlink()
    proc = lab.run("restore", lab.inv, {"kvmsnap_restore_vms": [lab.name("g1"), lab.name("g2")],
                                        "kvmsnap_restore_snapshot": "kvmsnap-daily_rpt4",
                                        "kvmsnap_restore_force": True, "kvmsnap_shutdown_timeout": 2})
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    vms = {v["name"]: v for v in rep["vms"]}
    assert vms[lab.name("g1")]["details"]["existed"] is True
    assert vms[lab.name("g2")]["details"]["existed"] is False, vms[lab.name("g2")]
    # the boot-sector guest ignores ACPI: shut down forced after kvmsnap_shutdown_timeout
    assert [(s["host"], s["vm"], s["how"]) for s in rep["shutdown"]] == [(KVM, lab.name("g1"), "forced")], rep
    assert 1.5 <= rep["shutdown"][0]["seconds"] < 30
    assert vms[lab.name("g1")]["details"]["shutdown"]["how"] == "forced"
    assert vms[lab.name("g2")]["details"]["shutdown"] is None
    assert "shut down" in proc.stdout and lab.name("g1") in proc.stdout
