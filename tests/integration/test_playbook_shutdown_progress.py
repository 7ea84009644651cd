"""A long graceful shutdown in kvmsnap.core.restore shows progress, then the VM is forced off.

The lab's minimal guests (a boot sector that halts) ignore the ACPI power button, so a restore with
kvmsnap_restore_force waits the whole kvmsnap_shutdown_timeout before it forces them off: the run must
print lines while it waits, and stop the VMs of a host at once rather than one after the other.
"""

from __future__ import annotations

import time

import pytest
from helpers.sim_fixtures import start_sim
from test_playbook_backup_restore import Lab, _out, guestlab

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]

SHUTDOWN_TIMEOUT = 12


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    base = tmp_path_factory.mktemp("shutdown-progress")
    lab = Lab(base, libvirt_system)
    lab.prefix = "%ssdp-" % guestlab.run_prefix()
    try:
        lab.sims["s1"] = start_sim(base / "sim1", {
            "svms": [{"name": "svm1", "lifs": [{"name": "svm1_data1", "address": "127.0.0.1"}]}],
            "volumes": [{"name": "vol_ds1", "svm": "svm1", "junction_path": "/vol_ds1", "size": "1G"}]})
        lab.add_guest("g1", "s1", "vol_ds1")
        lab.add_guest("g2", "s1", "vol_ds1")
        ds = {"path": str(lab.vol("s1", "vol_ds1")), "controller": "c1", "svm": "svm1", "volume": "vol_ds1"}
        lab.inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("g1"), lab.name("g2")]}},
                                {"c1": lab.controller("s1")}, kvmsnap_datastores=[ds])
        proc = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": "kvmsnap-daily_sdp1"})
        assert proc.returncode == 0, _out(proc)
        yield lab
    finally:
        guestlab.cleanup_prefix(libvirt_system, lab.prefix)
        for sim in lab.sims.values():
            sim.stop()


def test_shutdown_wait_prints_progress_and_forces_off(lab):
    import libvirt
    assert lab.state("g1") == libvirt.VIR_DOMAIN_RUNNING and lab.state("g2") == libvirt.VIR_DOMAIN_RUNNING
    started = time.monotonic()
    proc = lab.run("restore", lab.inv, {"kvmsnap_restore_vms": [lab.name("g1"), lab.name("g2")],
                                        "kvmsnap_restore_snapshot": "kvmsnap-daily_sdp1", "kvmsnap_restore_force": True,
                                        "kvmsnap_shutdown_timeout": SHUTDOWN_TIMEOUT})
    took = time.monotonic() - started
    assert proc.returncode == 0, _out(proc)
    waiting = ("Waiting for the VMs to shut down, graceful then forced off, a line every 5 s - 2 VM(s), graceful for up "
               "to %d s" % SHUTDOWN_TIMEOUT)
    assert waiting in proc.stdout, _out(proc)
    # a line every 5 s while the guests ignore the power button: at least two in 12 s
    retries = [line for line in proc.stdout.splitlines() if "RETRYING" in line and "to shut down" in line]
    assert len(retries) >= 2, _out(proc)
    # both guests were forced off after the graceful wait, at once: one wait, not two after each other
    rep = proc.report
    stops = {r["name"]: r for r in rep["vms"]}
    assert set(stops) == {lab.name("g1"), lab.name("g2")}, rep
    assert took < 2 * SHUTDOWN_TIMEOUT + 60, took
    assert lab.state("g1") == libvirt.VIR_DOMAIN_RUNNING and lab.state("g2") == libvirt.VIR_DOMAIN_RUNNING
