"""vm_quiesce with the overlay fence on the lab libvirtd (the multi-host path of the backup role): state=quiesced
overlays the VMs and releases them at once, they run on their overlays between the tasks, nobody else commits them
while the run owns them; state=released with the run id commits them; the watchdog commits them at the deadline
when the release never comes; fence=auto holds the VM that cannot take an overlay."""

from __future__ import annotations

import os
import time

import pytest
from helpers.guest_fixtures import SYSTEM_URI
from helpers.vm_utils import block_job, wait_for

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal
from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import parse_domain_xml
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_rules import is_overlay_path

pytestmark = [pytest.mark.needs_libvirtd]
RUNNING, PAUSED = 1, 3


def sources(dom):
    return {d["target"]: d["path"] for d in parse_domain_xml(dom.XMLDesc(0))["disks"]}


def overlay_files(wdir):
    return sorted(n for n in os.listdir(wdir) if is_overlay_path(os.path.join(wdir, n)))


def quiesce_args(state_dir, vms, **kw):
    return dict({"uri": SYSTEM_URI, "vms": vms, "mode": "suspend", "deadline": 60, "state_dir": state_dir,
                 "fence": "overlay", "run_id": "ovq-1"}, **kw)


def test_overlay_quiesce_then_release_commits(module_runner, minimal_guests, tmp_path):
    wdir = tmp_path / "ds"
    doms = minimal_guests(2, workdir=wdir)
    names = [d.name() for d in doms]
    bases = {d.name(): sources(d) for d in doms}
    sd = str(tmp_path / "state")
    res = module_runner("vm_quiesce", quiesce_args(sd, names))
    assert not res.failed, res
    for v in res["vms"]:
        assert v["fence"] == "overlay" and v["action"] == "suspended" and v["released"], v
        assert 0 < v["pause_ms"] < 2000 and v["overlay_at"] > 0, v
    # between the tasks: the VMs run, on overlays; their base images are what the snapshot will capture
    for d in doms:
        assert d.state()[0] == RUNNING
        assert all(is_overlay_path(p) for p in sources(d).values()), sources(d)
    assert len(overlay_files(wdir)) == 2
    # the run owns its overlays: another run neither locks these VMs nor commits the overlays
    other = module_runner("vm_quiesce", quiesce_args(sd, names[:1], run_id="ovq-2", fence="auto"))
    assert other.failed and "ovq-1" in other["msg"], other
    time.sleep(1.2)  # the watchdog polls: it must not commit inside the run's deadline
    assert len(overlay_files(wdir)) == 2
    rel = module_runner("vm_quiesce", {"uri": SYSTEM_URI, "vms": names, "state": "released", "state_dir": sd,
                                       "run_id": "ovq-1"})
    assert not rel.failed, rel
    assert rel["changed"] and len(rel["overlays"]) == 2, rel
    assert all(o["result"] == "committed" and o["removed"] for o in rel["overlays"]), rel["overlays"]
    for v in rel["vms"]:
        assert v["fence"] == "overlay" and v["released_by"] == "release", v
        assert v["overlay_at"] <= v["commit_started_at"], v
        assert all(o["state"] == "committed" for o in v["overlays"]), v
    for d in doms:
        assert d.state()[0] == RUNNING and sources(d) == bases[d.name()]
    assert overlay_files(wdir) == []
    journals = [j for j in _journal.list_journals(sd) if _journal.run_of(j) == "ovq-1"]
    assert journals and all(_journal.is_final(j) and not _journal.holds_overlays(j) for j in journals)
    assert os.listdir(os.path.join(sd, "locks")) == []
    again = module_runner("vm_quiesce", {"uri": SYSTEM_URI, "vms": names, "state": "released", "state_dir": sd,
                                         "run_id": "ovq-1"})
    assert not again.failed and not again["changed"], again


def test_watchdog_commits_at_the_deadline_when_no_release_comes(module_runner, minimal_guests, tmp_path):
    wdir = tmp_path / "ds"
    dom = minimal_guests(1, workdir=wdir)[0]
    base = sources(dom)
    sd = str(tmp_path / "state")
    res = module_runner("vm_quiesce", quiesce_args(sd, [dom.name()], deadline=3))
    assert not res.failed, res
    assert overlay_files(wdir) and dom.state()[0] == RUNNING
    assert wait_for(lambda: sources(dom) == base and not overlay_files(wdir), 20), sources(dom)
    logfile = os.path.join(sd, "watchdog.log")

    def read_log():
        with open(logfile) as fh:
            return fh.read()
    # the watchdog writes its per-overlay line after the pivot the test saw: wait for it too
    assert wait_for(lambda: ": committed" in read_log(), 10), read_log()
    assert "committing the overlays of run" in read_log()
    assert dom.state()[0] == RUNNING


def test_auto_holds_the_vm_that_cannot_take_an_overlay(module_runner, minimal_guests, tmp_path):
    wdir = tmp_path / "ds"
    doms = minimal_guests(2, workdir=wdir)
    busy = doms[1]
    sd = str(tmp_path / "state")
    with block_job(busy, tmp_path / "dest.img"):
        res = module_runner("vm_quiesce", quiesce_args(sd, [d.name() for d in doms], fence="auto"))
        assert not res.failed, res
        by_name = {v["name"]: v for v in res["vms"]}
        assert by_name[doms[0].name()]["fence"] == "overlay" and doms[0].state()[0] == RUNNING
        held = by_name[busy.name()]
        assert held["fence"] == "direct" and "block job" in held["fence_reason"], held
        assert busy.state()[0] == PAUSED  # the direct fence holds it until the release
        rel = module_runner("vm_quiesce", {"uri": SYSTEM_URI, "vms": [d.name() for d in doms], "state": "released",
                                           "state_dir": sd, "run_id": "ovq-1"})
        assert not rel.failed, rel
        by_name = {v["name"]: v for v in rel["vms"]}
        assert by_name[busy.name()]["release_result"] == "resumed" and busy.state()[0] == RUNNING
        assert by_name[doms[0].name()]["overlays"][0]["state"] == "committed"
        assert overlay_files(wdir) == []


def test_fence_overlay_refuses_before_touching_anything(module_runner, minimal_guests, tmp_path):
    wdir = tmp_path / "ds"
    doms = minimal_guests(2, workdir=wdir)
    busy = doms[1]
    with block_job(busy, tmp_path / "dest.img"):
        res = module_runner("vm_quiesce", quiesce_args(str(tmp_path / "state"), [d.name() for d in doms]))
        assert res.failed and busy.name() in res["msg"] and "fence=auto" in res["msg"], res
        assert all(d.state()[0] == RUNNING for d in doms) and overlay_files(wdir) == []
