"""What a user watches: the monitoring check kvmsnap.core.check_backups, and a restore's long shutdown.

Real libvirtd with minimal guests whose disks live in the ONTAP simulator's volume (as in
tests/helpers/playbook_lab.py): one backup of g1, g3 and g4 (one ansible-playbook run for the file), then
the check passes for g1, fails for g1 with a maximum age of 0, and fails for g2, which has never been backed
up. Then g3 and g4 are restored: the minimal guests ignore the ACPI power button, so the restore waits the
whole kvmsnap_shutdown_timeout before it forces them off, and must print lines while it waits.
"""

from __future__ import annotations

import json
import time

import pytest
from helpers.playbook_lab import Lab, guestlab, run_output

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]

SHUTDOWN_TIMEOUT = 12


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    base = tmp_path_factory.mktemp("check-backups")
    lab = Lab(base, libvirt_system)
    lab.prefix = "%schk-" % guestlab.run_prefix()
    try:
        lab.start_sim("s1", size="1G")
        lab.add_guests(*((key, "s1", "vol_ds1") for key in ("g1", "g2", "g3", "g4")))
        ds = lab.datastore("s1", "vol_ds1")
        lab.inv_g1 = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("g1")]}}, {"c1": lab.controller("s1")},
                                   kvmsnap_datastores=[ds])
        lab.inv_both = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("g1"), lab.name("g2")]}},
                                     {"c1": lab.controller("s1")}, kvmsnap_datastores=[ds])
        lab.inv_stop = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("g3"), lab.name("g4")]}},
                                     {"c1": lab.controller("s1")}, kvmsnap_datastores=[ds])
        backed = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name(k) for k in ("g1", "g3", "g4")]}},
                               {"c1": lab.controller("s1")}, kvmsnap_datastores=[ds])
        proc = lab.run("backup", backed, {"kvmsnap_snapshot_name": "kvmsnap-daily_chk1"})
        assert proc.returncode == 0, run_output(proc)
        yield lab
    finally:
        lab.close()


def test_fresh_backup_passes_and_writes_the_report(lab):
    report = lab.base / "check.json"
    proc = lab.run("check_backups", lab.inv_g1, {"kvmsnap_check_report": str(report)})
    assert proc.returncode == 0, run_output(proc)
    assert "VM %s on kvm1: newest good backup kvmsnap-daily_chk1 (policy daily" % lab.name("g1") in proc.stdout
    assert "1 VM(s) checked: 1 with a good backup younger than 26 h, 0 failing." in proc.stdout
    data = json.loads(report.read_text())
    assert data["ok"] is True and data["max_age_hours"] == 26
    assert [(v["name"], v["ok"], v["snapshot"]) for v in data["vms"]] == [(lab.name("g1"), True, "kvmsnap-daily_chk1")]
    assert 0 <= data["vms"][0]["age_seconds"] < 3600
    assert "netapp123" not in proc.stdout


def test_backup_older_than_the_limit_fails_naming_the_vm(lab):
    report = lab.base / "check-aged.json"
    proc = lab.run("check_backups", lab.inv_g1, {"kvmsnap_check_max_age_hours": 0,
                                                 "kvmsnap_check_report": str(report)})
    assert proc.returncode != 0, run_output(proc)
    line = "VM %s on kvm1: newest good backup kvmsnap-daily_chk1" % lab.name("g1")
    assert line in proc.stdout and "older than kvmsnap_check_max_age_hours=0" in proc.stdout, run_output(proc)
    assert json.loads(report.read_text())["ok"] is False  # written for monitoring also when failing


def test_vm_without_backup_fails(lab):
    proc = lab.run("check_backups", lab.inv_both)
    assert proc.returncode != 0, run_output(proc)
    assert "VM %s on kvm1: no good backup found on its volumes" % lab.name("g2") in proc.stdout, run_output(proc)
    # the VM that has one is still listed as fine, and the failure is one line per VM
    assert "VM %s on kvm1: newest good backup kvmsnap-daily_chk1" % lab.name("g1") in proc.stdout
    assert "2 VM(s) checked: 1 with a good backup younger than 26 h, 1 failing." in proc.stdout


def test_shutdown_wait_prints_progress_and_forces_off(lab):
    import libvirt
    assert lab.state("g3") == libvirt.VIR_DOMAIN_RUNNING and lab.state("g4") == libvirt.VIR_DOMAIN_RUNNING
    started = time.monotonic()
    extra = {"kvmsnap_restore_vms": [lab.name("g3"), lab.name("g4")], "kvmsnap_restore_snapshot": "kvmsnap-daily_chk1",
             "kvmsnap_restore_force": True, "kvmsnap_shutdown_timeout": SHUTDOWN_TIMEOUT}
    proc = lab.run("restore", lab.inv_stop, extra)
    took = time.monotonic() - started
    assert proc.returncode == 0, run_output(proc)
    waiting = ("Waiting for the VMs to shut down, graceful then forced off, a line every 5 s - 2 VM(s), graceful for up "
               "to %d s" % SHUTDOWN_TIMEOUT)
    assert waiting in proc.stdout, run_output(proc)
    # a line every 5 s while the guests ignore the power button: at least two in 12 s
    retries = [line for line in proc.stdout.splitlines() if "RETRYING" in line and "to shut down" in line]
    assert len(retries) >= 2, run_output(proc)
    # both guests were forced off after the graceful wait, restored and started again
    rep = proc.report
    stops = {r["name"]: r for r in rep["vms"]}
    assert set(stops) == {lab.name("g3"), lab.name("g4")}, rep
    assert took < 2 * SHUTDOWN_TIMEOUT + 120, took  # the two waits overlap (the VMs stop at once)
    assert lab.state("g3") == libvirt.VIR_DOMAIN_RUNNING and lab.state("g4") == libvirt.VIR_DOMAIN_RUNNING
