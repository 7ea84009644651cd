"""vm_backup with the overlay fence on the lab libvirtd and the ONTAP simulator: minimal guests overlaid (pause
printed), the snapshot taken while they run, every overlay committed and removed, the snapshot good and inside
every VM's window; fence=auto sending a VM with a block job to the direct fence with the reason; a module killed
(-9) between overlay and commit leaves the VMs on their overlays for the watchdog, which commits them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers.guest_fixtures import SYSTEM_URI
from helpers.vm_utils import block_job, resume_all, wait_for
from test_vm_backup_system import backup_args, start_module, stop_module

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal
from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import parse_domain_xml
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_rules import is_overlay_path

pytestmark = [pytest.mark.needs_libvirtd]
RUNNING = 1


def sources(dom):
    return {d["target"]: d["path"] for d in parse_domain_xml(dom.XMLDesc(0))["disks"]}


def datastore(sim):
    vol = sim.data / "volumes" / "svm1" / "vol_ds1"
    vol.mkdir(parents=True, exist_ok=True)
    return vol, [{"path": str(vol), "svm": "svm1", "volume": "vol_ds1"}]


def overlay_files(vol):
    return sorted(n for n in os.listdir(vol) if is_overlay_path(os.path.join(vol, n)))


@pytest.mark.parametrize("count", [2, 4])
def test_overlay_fence_backup(ontap_sim, minimal_guests, tmp_path, module_runner, count):
    sim = ontap_sim
    vol, ds = datastore(sim)
    doms = minimal_guests(count, workdir=vol / ("m%d" % count))
    bases = {d.name(): sources(d) for d in doms}
    args = backup_args(sim, str(tmp_path / "state"), [d.name() for d in doms], fence="overlay", volumes=None,
                       datastores=ds)
    res = module_runner("vm_backup", args, timeout=120)
    assert not res.failed, res
    assert res["trust"] == "good" and not res.get("window_faults"), res
    pauses = sorted(v["pause_ms"] for v in res["vms"])
    sys.stderr.write("\nvm_backup fence=overlay, %d minimal VMs: pauses %s ms, snapshot %.1f ms\n"
                     % (count, ", ".join("%.1f" % p for p in pauses), res["snapshot_ms"]))
    ct = res["snapshots"][0]["create_time"]
    for v in res["vms"]:
        assert v["fence"] == "overlay" and v["action"] == "suspended" and v["consistency"] == "suspended", v
        assert 0 < v["pause_ms"] < res["snapshot_ms"] + 1000, v
        assert int(v["overlay_at"]) <= ct <= v["commit_started_at"] + 1, (v, ct)
        assert v["overlays"] and all(o["result"] == "committed" and o["removed"] for o in v["overlays"]), v
    for d in doms:
        assert d.state()[0] == RUNNING
        assert sources(d) == bases[d.name()]  # back on their base images
    assert overlay_files(vol / ("m%d" % count)) == []
    assert not any(_journal.holds_overlays(j) for j in _journal.list_journals(args["state_dir"]))
    # the snapshot holds the base images (and the overlay files, which restores ignore)
    snapdir = vol / ".snapshot" / args["name"] / ("m%d" % count)
    for d in doms:
        assert (snapdir / os.path.basename(bases[d.name()]["hda"])).is_file()


def test_auto_sends_a_vm_with_a_block_job_to_direct(ontap_sim, minimal_guests, tmp_path, module_runner):
    sim = ontap_sim
    vol, ds = datastore(sim)
    wdir = vol / "auto"
    doms = minimal_guests(2, workdir=wdir)
    busy = doms[1]
    with block_job(busy, tmp_path / "dest.img"):
        args = backup_args(sim, str(tmp_path / "state"), [d.name() for d in doms], fence="auto", volumes=None,
                           datastores=ds)
        res = module_runner("vm_backup", args, timeout=120)
        assert not res.failed, res
        by_name = {v["name"]: v for v in res["vms"]}
        assert by_name[doms[0].name()]["fence"] == "overlay"
        direct = by_name[busy.name()]
        assert direct["fence"] == "direct" and "block job" in direct["fence_reason"], direct
        assert direct["action"] == "suspended" and "overlays" not in direct
        assert res["trust"] == "good"
        sys.stderr.write("\nfence=auto: overlay VM pause %.1f ms, direct VM pause %.1f ms\n"
                         % (by_name[doms[0].name()]["pause_ms"], direct["pause_ms"]))
        assert overlay_files(wdir) == []


def test_fence_overlay_refuses_a_vm_that_cannot_take_it(ontap_sim, minimal_guests, tmp_path, module_runner):
    sim = ontap_sim
    vol, ds = datastore(sim)
    dom = minimal_guests(1, workdir=vol / "refuse")[0]
    with block_job(dom, tmp_path / "d.img"):
        args = backup_args(sim, str(tmp_path / "state"), [dom.name()], fence="overlay", volumes=None, datastores=ds)
        res = module_runner("vm_backup", args, timeout=120)
        assert res.failed and "cannot take the overlay fence" in res["msg"] and "nothing was quiesced" in res["msg"]
        assert dom.state()[0] == RUNNING


@pytest.mark.slow
def test_module_killed_between_overlay_and_commit_watchdog_commits(ontap_sim, minimal_guests, tmp_path, module_runner):
    sim = ontap_sim
    vol, ds = datastore(sim)
    wdir = vol / "killed"
    doms = minimal_guests(2, workdir=wdir)
    bases = {d.name(): sources(d) for d in doms}
    sd = str(tmp_path / "state")
    # the snapshot call hangs: the VMs run on their overlays meanwhile
    sim.admin("POST", "/_sim/faults", {"action": "hang", "method": "POST", "path": "/api/*snapshots",
                                       "count": 1, "seconds": 8})
    proc, path = start_module(backup_args(sim, sd, [d.name() for d in doms], fence="overlay", volumes=None,
                                          datastores=ds))
    try:
        assert wait_for(lambda: all(is_overlay_path(sources(d)["hda"]) for d in doms), 30), "no overlays"
        # released right after the switch (a moment after the overlay appears): they run on their overlays
        assert wait_for(lambda: all(d.state()[0] == RUNNING for d in doms), 10)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
        # the watchdog sees the module gone and commits (docs/dev/overlay.md)
        assert wait_for(lambda: all(sources(d) == bases[d.name()] for d in doms), 60, step=0.5), \
            [sources(d) for d in doms]
        assert wait_for(lambda: overlay_files(wdir) == [], 10)
        journals = _journal.list_journals(sd)
        assert len(journals) == 1 and not _journal.holds_overlays(journals[0]), journals
        log = open(os.path.join(sd, "watchdog.log")).read()
        assert ": committed" in log, log
        # the next run finds nothing left and backs up normally
        sim.admin("DELETE", "/_sim/faults")
        args = backup_args(sim, sd, [d.name() for d in doms], fence="overlay", volumes=None, datastores=ds)
        out = module_runner("vm_backup", args, timeout=120)
        assert not out.failed, out
        assert [r for r in out["recovered"] if r.get("kind") == "overlay"] == []
    finally:
        sim.admin("DELETE", "/_sim/faults")
        stop_module(proc, path)
        resume_all(doms)


def test_next_run_commits_a_leftover_overlay(ontap_sim, minimal_guests, tmp_path, module_runner):
    """A leftover of a dead run whose watchdog is gone too: the next vm_backup commits it first (`recovered`)."""
    sim = ontap_sim
    from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import SharedConnection
    from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_run import fence_overlays, plan_vms
    vol, ds = datastore(sim)
    wdir = vol / "leftover"
    dom = minimal_guests(1, workdir=wdir)[0]
    base = sources(dom)["hda"]
    sd = _journal.ensure_state_dir(str(tmp_path / "state"))
    dead = _journal.new_run_id("dead")
    _journal.write(sd, _journal.new_journal(dead, "vm_backup", SYSTEM_URI, "suspend", 60,
                                            [{"uuid": dom.UUIDString(), "name": dom.name(), "prior_state": "running"}]))
    sc = SharedConnection(SYSTEM_URI, retries=2)
    try:
        outs = fence_overlays(sc, sd, dead, plan_vms(sc, [dom.UUIDString()], dead), dead)
        assert outs[0]["created"] and is_overlay_path(sources(dom)["hda"])
    finally:
        sc.close()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # the dead run's module process
    gone.wait()
    _journal.update(sd, dead, lambda j: j.update(owners=[{"pid": gone.pid, "start": 1, "role": "module"}]))
    _journal.update(sd, dead, lambda j: _journal.mark_final(j, "released", "a dead module"))
    args = backup_args(sim, sd, [dom.name()], fence="auto", volumes=None, datastores=ds)
    out = module_runner("vm_backup", args, timeout=120)
    assert not out.failed, out
    rec = [r for r in out["recovered"] if r.get("kind") == "overlay"]
    assert len(rec) == 1 and rec[0]["result"] == "committed" and rec[0]["run_id"] == dead, rec
    assert out["vms"][0]["fence"] == "overlay"  # recovered first, then overlaid again by this run
    assert sources(dom)["hda"] == base and overlay_files(wdir) == []
