"""The backup and restore playbooks and the ONTAP side of access: the login's privileges are checked before any
VM is touched, and the local catalog is read only for the controllers of the inventory in use.

Real libvirtd with minimal boot-sector guests (the Lab of tests/helpers/playbook_lab.py), disks inside the ONTAP
simulators' volumes. The tests run in order and share the lab:

  read-only user: backup fails in the pre-flight (REST, ZAPI) -> the documented custom role backs up ->
  a user without restore rights: restore fails before any VM is stopped or safety snapshot taken ->
  backup through two controllers, then a restore with an inventory that has only the first one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers.guest_fixtures import SYSTEM_URI
from helpers.playbook_lab import Lab, run_output, sha
from test_ontap_privileges import KVMSNAP_ROLE

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
import guestlab

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]

USERS = [{"name": "admin", "password": "netapp123", "role": "admin"},
         {"name": "viewer", "password": "viewer-pw-123", "role": "readonly"},
         {"name": "backup", "password": "backup-pw-123", "role": "backup"},
         {"name": "kvmsnap", "password": "kvmsnap-pw-123", "role": "kvmsnap"}]
MUTATING_ZAPI = ("snapshot-create", "snapshot-multicreate", "cg-start", "cg-commit", "snapshot-delete",
                 "snapshot-modify-iter", "snapshot-restore-file", "snapshot-restore-volume", "snapmirror-update")


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    base = tmp_path_factory.mktemp("access")
    lab = Lab(base, libvirt_system)
    try:
        lab.start_sim("s1", size="1G", users=USERS, roles={"kvmsnap": {"privileges": KVMSNAP_ROLE}})
        lab.start_sim("s2", size="1G", lif=("l1", "127.0.0.2"), cluster={"name": "cluster2"}, users=USERS[:1])
        lab.add_guests(("a1", "s1", "vol_ds1"), ("a2", "s2", "vol_ds1"))
        lab.ds1 = lab.datastore("s1", "vol_ds1")
        lab.ds2 = lab.datastore("s2", "vol_ds1", "c2")
        yield lab
    finally:
        lab.close()


def _inventory(lab, user: str, password: str, transport: str = "rest", two: bool = False, vms=("a1",)):
    c1 = dict(lab.controller("s1", transport), ontap_username=user, ontap_password=password)
    ctrls = {"c1": c1, **({"c2": lab.controller("s2")} if two else {})}
    return lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name(v) for v in vms], "kvmsnap_libvirt_uri": SYSTEM_URI}},
                         ctrls, kvmsnap_datastores=[lab.ds1] + ([lab.ds2] if two else []),
                         kvmsnap_shutdown_timeout=3)


def _mutations(lab, since: int) -> list:
    calls = lab.sims["s1"].admin("GET", "calls?since=%d" % since)["calls"]
    return [c for c in calls if c["method"] in ("POST", "PATCH", "DELETE") and c["path"].startswith("/api")
            or c.get("api") in MUTATING_ZAPI]


def _last_seq(lab) -> int:
    calls = lab.sims["s1"].admin("GET", "calls")["calls"]
    return calls[-1]["seq"] if calls else 0


@pytest.mark.parametrize("transport", ["rest", "zapi"])
def test_readonly_user_backup_fails_in_preflight_with_no_vm_paused(lab, transport):
    import libvirt
    since = _last_seq(lab)
    proc = lab.run("backup", _inventory(lab, "viewer", "viewer-pw-123", transport))
    assert proc.returncode != 0
    where = "/api/storage/volumes/*/snapshots" if transport == "rest" else "volume snapshot create"
    for part in ("user viewer (role readonly", where, "snapshot_create", "docs/security.md", "nothing was touched"):
        assert part in proc.stdout, run_output(proc)
    assert "Lock this host's VMs" not in proc.stdout and "Quiesce" not in proc.stdout
    assert lab.state("a1") == libvirt.VIR_DOMAIN_RUNNING
    assert not (lab.base / "state" / "runs").exists() or not list((lab.base / "state" / "runs").iterdir())
    assert lab.snapshots("s1", "vol_ds1") == []
    assert _mutations(lab, since) == []


def test_documented_custom_role_backs_up(lab):
    proc = lab.run("backup", _inventory(lab, "kvmsnap", "kvmsnap-pw-123"),
                   {"kvmsnap_snapshot_name": "kvmsnap-daily_acc1"})
    assert proc.returncode == 0, run_output(proc)
    assert proc.report["status"] == "ok"
    assert lab.snapshots("s1", "vol_ds1") == ["kvmsnap-daily_acc1"]


def test_user_without_restore_rights_fails_before_any_vm_is_stopped(lab):
    import libvirt
    before = sha(lab.disk("a1", "s1", "vol_ds1"))
    since = _last_seq(lab)
    proc = lab.run("restore", _inventory(lab, "backup", "backup-pw-123"),
                   {"kvmsnap_restore_vms": [lab.name("a1")], "kvmsnap_restore_snapshot": "kvmsnap-daily_acc1",
                    "kvmsnap_restore_force": True})
    assert proc.returncode != 0
    for part in ("user backup (role backup", "file_restore", "/api/storage/volumes", "docs/security.md"):
        assert part in proc.stdout, run_output(proc)
    assert lab.state("a1") == libvirt.VIR_DOMAIN_RUNNING
    assert lab.snapshots("s1", "vol_ds1") == ["kvmsnap-daily_acc1"]  # no safety snapshot
    assert sha(lab.disk("a1", "s1", "vol_ds1")) == before
    assert _mutations(lab, since) == []


def test_restore_reads_only_the_catalog_of_its_inventorys_controllers(lab):
    import libvirt
    two = lab.run("backup", _inventory(lab, "admin", "netapp123", two=True, vms=("a1", "a2")),
                  {"kvmsnap_snapshot_name": "kvmsnap-daily_acc2"})
    assert two.returncode == 0, run_output(two)
    assert "kvmsnap-daily_acc2" in lab.snapshots("s2", "vol_ds1")
    # the same state dir, an inventory without c2: its catalog entries are ignored, not connected to
    guestlab.destroy_and_undefine(lab.conn.lookupByName(lab.name("a1")))
    proc = lab.run("restore", _inventory(lab, "kvmsnap", "kvmsnap-pw-123"),
                   {"kvmsnap_restore_vms": [lab.name("a1")], "kvmsnap_restore_snapshot": "kvmsnap-daily_acc2"})
    assert proc.returncode == 0, run_output(proc)
    assert "username" not in proc.stdout
    assert "names controller c2, which is not in this inventory's ontap_controllers: ignored" in proc.stdout
    assert "kvmsnap-daily_acc2" in proc.stdout
    assert lab.state("a1") == libvirt.VIR_DOMAIN_RUNNING


def test_restore_prunes_old_safety_snapshots_but_not_one_an_open_journal_needs(lab):
    import libvirt
    from helpers.module_fixtures import run_module
    old = ["kvmsnap-prerestore_20200101T000000Z", "kvmsnap-prerestore_20200102T000000Z",
           "kvmsnap-prerestore_20200103T000000Z"]
    for name in old:
        made = run_module("ontap_snapshot", {**lab.sims["s1"].conn(), "volumes": ["svm1:vol_ds1"], "name": name,
                                             "policy": "prerestore", "purpose": "safety", "consistency": "crash"})
        assert not made.failed, made
    # an interrupted restore of another VM still needs the oldest one
    journal = lab.base / "state" / "restore" / "20200101T000000Z-0badc0de.json"
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text('{"version": 1, "run_id": "20200101T000000Z-0badc0de", "host": "kvm1", "snapshot": "x", '
                       '"safety_snapshot": "%s", "stage": "disks", "vms": [{"name": "gone", "uuid": '
                       '"0c1a2b3c-0000-4000-8000-00000000dead", "start": false, "current_state": "shutoff"}]}' % old[0])
    guestlab.destroy_and_undefine(lab.conn.lookupByName(lab.name("a1")))
    proc = lab.run("restore", _inventory(lab, "kvmsnap", "kvmsnap-pw-123"),
                   {"kvmsnap_restore_vms": [lab.name("a1")], "kvmsnap_restore_snapshot": "kvmsnap-daily_acc2",
                    "kvmsnap_prerestore_keep": 1})
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    snaps = lab.snapshots("s1", "vol_ds1")
    safety = [s for s in snaps if "prerestore" in s]
    assert rep["safety_snapshot"] in safety and old[0] in safety, snaps  # newest kept, journal's one kept
    assert old[1] not in snaps and old[2] not in snaps, snaps
    assert set(rep["pruned_safety_snapshots"]) >= {old[1], old[2]}
    assert "kvmsnap-daily_acc2" in snaps and "kvmsnap-daily_acc1" in snaps  # backups untouched
    assert lab.state("a1") == libvirt.VIR_DOMAIN_RUNNING


def test_certificate_only_controller_gets_its_replication_health(lab):
    """The discover role's SnapMirror health check gets the controller's client certificate like every other
    ONTAP call of the roles (it once lacked cert_file/key_file; the failure was hidden in replication_errors)."""
    issued = lab.sims["s1"].admin("POST", "client-cert", {"user": "admin"})
    c1 = {k: v for k, v in lab.controller("s1").items() if k not in ("ontap_username", "ontap_password")}
    c1.update(ontap_cert_file=issued["cert_file"], ontap_key_file=issued["key_file"])
    inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("a1")], "kvmsnap_libvirt_uri": SYSTEM_URI}}, {"c1": c1},
                        kvmsnap_datastores=[lab.ds1])
    since = _last_seq(lab)
    proc = lab.run("discover", inv)
    assert proc.returncode == 0, run_output(proc)
    assert proc.report["replication_errors"] == [], proc.report["replication_errors"]
    calls = lab.sims["s1"].admin("GET", "calls?since=%d" % since)["calls"]
    assert [c for c in calls if "snapmirror" in c["path"] and c["status"] == 200], calls
    assert [v["name"] for v in proc.report["vms"]] == [lab.name("a1")]


def test_single_host_backup_uses_kvmsnap_retries(lab):
    """kvmsnap_retries reaches vm_backup of a single-host backup. The snapshot creation is retried RETRIES times and
    each try's call as often again: 16 answers 'temporarily locked' are absorbed by 4 retries (24), not by the
    module's own default of 3 (15)."""
    sim = lab.sims["s1"]
    for path in ("/api/storage/volumes/*/snapshots", "/api/application/consistency-groups*"):
        sim.admin("POST", "faults", {"action": "error", "method": "POST", "path": path, "count": 16, "status": 503,
                                     "message": "Volume is temporarily locked"})
    try:
        proc = lab.run("backup", _inventory(lab, "admin", "netapp123"),
                       {"kvmsnap_snapshot_name": "kvmsnap-daily_acc3", "kvmsnap_retries": 4})
    finally:
        sim.admin("DELETE", "faults")
    assert proc.returncode == 0, run_output(proc)
    assert proc.report["status"] == "ok"
    assert "kvmsnap-daily_acc3" in lab.snapshots("s1", "vol_ds1")
