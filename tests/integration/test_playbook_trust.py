"""The backup role's trust rules end to end through ansible-playbook (docs/dev/faults.md#late-snapshot,
docs/dev/faults.md#consistency-derived, docs/dev/faults.md#release-own, and what the report says).

The lab's libvirtd (tests/lab/labd) with minimal boot-sector guests (no agent: the quiesce is a suspend) whose disks
live in the simulator's volume directories; two inventory hosts (both local) share a volume for the shared fence:

- the snapshot is slower than kvmsnap_quiesce_deadline: the watchdogs release the VMs, the report says crash
  for them and the run fails (snapshot marked late); with kvmsnap_allow_crash_consistent it passes, reports
  crash and the snapshot is confirmed good with consistency=crash;
- two runs at once (one host, two hosts): the second refuses at its lock step, writes no manifest, pauses no
  VM, names the holder; the winner's snapshot is good and consistent; one run id everywhere;
- report_dir is checked in the pre-flight, before any VM is touched; a failed shared snapshot names the
  error once and calls no healthy host unreachable.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
from helpers.playbook_lab import PLAYBOOK, Lab, run_output

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import is_good, parse_comment

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]
RUNNING = 1


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    base = tmp_path_factory.mktemp("pbtrust")
    lab = Lab(base, libvirt_system)
    try:
        lab.one_volume("trs")
        lab.two_hosts = lab.inventory({"kvmA": {"kvmsnap_vms": [lab.name("g1")]},
                                       "kvmB": {"kvmsnap_vms": [lab.name("g2")]}},
                                      {"c1": lab.controller("s1")}, kvmsnap_datastores=[lab.ds1],
                                      kvmsnap_quiesce_deadline=10)
        lab.one_host = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("g1"), lab.name("g2")]}},
                                     {"c1": lab.controller("s1")}, kvmsnap_datastores=[lab.ds1])
        yield lab
    finally:
        lab.close()


@pytest.fixture(autouse=True)
def no_faults(lab):
    lab.sims["s1"].admin("DELETE", "faults")
    yield
    lab.sims["s1"].admin("DELETE", "faults")


def snap(lab, name):
    s = lab.sims["s1"]
    client = connect(dict(s.conn(), timeout=30, retries=1, cert_file=None, key_file=None), "test")
    return client.get_snapshot("svm1", "vol_ds1", name)


def hang_snapshots(lab, seconds):
    lab.sims["s1"].admin("POST", "faults", {"action": "hang", "method": "POST", "path": "/api/*snapshots",
                                            "count": 1, "seconds": seconds})


def all_running(lab):
    return all(lab.state(k) == RUNNING for k in ("g1", "g2"))


def test_shared_fence_snapshot_after_the_deadline_is_crash_and_fails(lab):
    hang_snapshots(lab, 16)  # the watchdogs release at kvmsnap_quiesce_deadline=10
    proc = lab.run("backup", lab.two_hosts, {"kvmsnap_fence": "direct"})
    assert proc.returncode != 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "failed"
    for vm in rep["vms"]:
        assert vm["consistency"] == "crash" and not vm["ok"], vm
        assert "released by the watchdog" in vm["details"]["crash_reason"], vm
        assert vm["details"]["released_by"] == "watchdog"
    # the snapshot exists (the controller finished it) but is marked late: never a backup
    s = snap(lab, rep["snapshot"])
    meta = parse_comment(s["comment"])
    assert meta["state"] == "late" and meta["consistency"] == "crash" and not is_good(s)
    assert rep["trust"][0]["state"] == "late"
    assert "host failed or unreachable" not in proc.stdout  # both hosts are healthy
    assert all_running(lab)


def test_shared_overlay_fence_snapshot_after_the_deadline_is_crash_and_fails(lab):
    # the overlay fence released the VMs at once; at the deadline the watchdogs commit the overlays, so the base
    # images change again before the snapshot: outside every VM's overlay window
    hang_snapshots(lab, 16)
    proc = lab.run("backup", lab.two_hosts, {"kvmsnap_fence": "overlay"})
    assert proc.returncode != 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "failed"
    for vm in rep["vms"]:
        assert vm["fence"] == "overlay" and vm["consistency"] == "crash" and not vm["ok"], vm
        assert "outside its overlay window" in vm["details"]["crash_reason"], vm
        assert vm["pause_ms"] < 5000, vm  # released right after its overlay switch, not at the deadline
    meta = parse_comment(snap(lab, rep["snapshot"])["comment"])
    assert meta["state"] == "late" and meta["consistency"] == "crash"
    assert all_running(lab)


def test_shared_fence_late_snapshot_with_allow_crash_consistent_passes_as_crash(lab):
    hang_snapshots(lab, 16)
    proc = lab.run("backup", lab.two_hosts, {"kvmsnap_allow_crash_consistent": True, "kvmsnap_fence": "direct"})
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "ok", rep
    assert {v["consistency"] for v in rep["vms"]} == {"crash"}
    meta = parse_comment(snap(lab, rep["snapshot"])["comment"])
    assert meta["state"] == "good" and meta["consistency"] == "crash"
    assert all_running(lab)


def test_shared_fence_in_time_is_good_and_suspended(lab):
    proc = lab.run("backup", lab.two_hosts)
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert {(v["consistency"], v["ok"]) for v in rep["vms"]} == {("suspended", True)}
    meta = parse_comment(snap(lab, rep["snapshot"])["comment"])
    assert meta["state"] == "good" and meta["consistency"] == "suspended" and meta["run"] == rep["run_id"]


def test_shared_snapshot_failure_says_the_error_once_and_blames_no_healthy_host(lab):
    lab.sims["s1"].admin("POST", "faults", {"action": "error", "method": "POST", "path": "/api/*snapshots",
                                            "count": None, "status": 500, "message": "injected: aggregate offline"})
    proc = lab.run("backup", lab.two_hosts)
    assert proc.returncode != 0
    rep = proc.report
    assert rep["status"] == "failed" and rep["not_done"] == sorted([lab.name("g1"), lab.name("g2")])
    assert "host failed or unreachable" not in proc.stdout, run_output(proc)
    summary = "\n".join(rep["summary"])
    assert summary.count("injected: aggregate offline") == 1, summary
    assert all_running(lab)


def _popen(lab, inventory, extra=None):
    cmd = [PLAYBOOK, "-i", str(inventory), "kvmsnap.core.backup"]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def _locked(lab, n):
    locks = lab.base / "state" / "locks"
    return locks.is_dir() and len([p for p in os.listdir(locks) if p.endswith(".lock")]) >= n


@pytest.mark.parametrize("inv", ["one_host", "two_hosts"])
def test_two_concurrent_runs_one_wins_the_other_touches_nothing(lab, inv):
    inventory = getattr(lab, inv)
    extra = {"kvmsnap_quiesce_deadline": 120}
    hang_snapshots(lab, 35)  # the winner holds its locks (and VMs) that long
    started = time.time()
    first = _popen(lab, inventory, extra)
    try:
        assert _wait(lambda: _locked(lab, 2) or first.poll() is not None, 120), "the first run took no locks"
        assert first.poll() is None, first.stdout.read()
        second = lab.run("backup", inventory, extra)
        # the loser refuses at its lock step, naming the holder; it wrote nothing and paused nothing
        assert second.returncode != 0
        assert "is locked by run" in second.stdout, run_output(second)
        assert "Write each VM's manifest" not in second.stdout and "Quiesce" not in second.stdout
        loser = re.search(r"Nothing was written or quiesced by run (\S+?)\.", second.stdout).group(1)
        out = first.communicate(timeout=240)[0]
    finally:
        if first.poll() is None:  # the whole group: a module left running would hold the next test's VMs
            os.killpg(first.pid, 9)
            first.wait()
    assert first.returncode == 0, out[-6000:]
    rep = lab.report("backup", since=started)
    assert rep["status"] == "ok" and {v["consistency"] for v in rep["vms"]} == {"suspended"}, rep
    assert all_running(lab)
    # the winner's snapshot is good and consistent; one run id in the comment, the report and the manifests
    meta = parse_comment(snap(lab, rep["snapshot"])["comment"])
    assert meta["state"] == "good" and meta["consistency"] == "suspended"
    assert meta["run"] == rep["run_id"]
    for key in ("g1", "g2"):
        uuid = lab.conn.lookupByName(lab.name(key)).UUIDString()
        man = lab.vol("s1", "vol_ds1") / ".snapshot" / rep["snapshot"] / ".kvmsnap" / uuid / "manifest.json"
        assert json.loads(man.read_text())["run_id"] == rep["run_id"]
        assert json.loads(_manifest(lab, key))["run_id"] == rep["run_id"] != loser  # no manifest of the loser
    assert not _locked(lab, 1)  # every lock of the winner is gone


def _wait(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def _manifest(lab, key):
    uuid = lab.conn.lookupByName(lab.name(key)).UUIDString()
    path = lab.vol("s1", "vol_ds1") / ".kvmsnap" / uuid / "manifest.json"
    return path.read_bytes() if path.exists() else None


def test_report_dir_is_checked_in_the_preflight(lab, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    bad = str(blocker / "reports")
    before = {k: _manifest(lab, k) for k in ("g1", "g2")}
    snaps_before = lab.snapshots("s1", "vol_ds1")
    proc = lab.run("backup", lab.one_host, {"kvmsnap_report_dir": bad})
    assert proc.returncode != 0
    assert "kvmsnap_report_dir %s is not a writable directory" % bad in proc.stdout, run_output(proc)
    assert "Quiesce" not in proc.stdout and "Write each VM's manifest" not in proc.stdout
    assert {k: _manifest(lab, k) for k in ("g1", "g2")} == before
    assert lab.snapshots("s1", "vol_ds1") == snaps_before
    assert not _locked(lab, 1)


def test_recover_playbook_marks_orphans_late(lab):
    """The user's recovery entry point: kvmsnap.core.recover marks a dead run's pending snapshot late."""
    from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import build_comment
    s = lab.sims["s1"]
    client = connect(dict(s.conn(), timeout=30, retries=1, cert_file=None, key_file=None), "test")
    orphan = "kvmsnap-daily_20200101T000000Z"
    client.create_snapshot_set([("svm1", "vol_ds1")], orphan,
                               comment=build_comment("daily", "dead-run", "kvm1", state="pending",
                                                     until=int(time.time()) - 5))
    live = "kvmsnap-daily_20200101T000001Z"
    client.create_snapshot_set([("svm1", "vol_ds1")], live,
                               comment=build_comment("daily", "live-run", "kvm1", state="pending",
                                                     until=int(time.time()) + 3600))
    proc = lab.run("recover", lab.one_host)
    assert proc.returncode == 0, run_output(proc)
    assert "marked late: %s" % orphan in proc.stdout, run_output(proc)
    meta = parse_comment(snap(lab, orphan)["comment"])
    assert meta["state"] == "late" and meta["consistency"] == "crash"
    assert parse_comment(snap(lab, live)["comment"])["state"] == "pending"  # a live run's is left alone
    assert all_running(lab)


def test_single_host_hanging_snapshot_stays_pending_and_the_next_backup_marks_it_late(lab):
    """A late snapshot through the role: vm_backup gives the snapshot up at the deadline (+ its short wait), the run fails, the VMs
    run; the snapshot the controller finishes later is pending, never good; the next backup's pre-flight marks it
    late once its `until` (now + kvmsnap_quiesce_deadline + kvmsnap_timeout) has passed."""
    extra = {"kvmsnap_quiesce_deadline": 10, "kvmsnap_timeout": 5}
    hang_snapshots(lab, 24)  # > deadline 10 s + the 10 s wait after the release
    proc = lab.run("backup", lab.one_host, extra)
    assert proc.returncode != 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "failed" and rep["done"] == []
    assert "did not complete within the deadline of 10s" in proc.stdout, run_output(proc)
    assert all_running(lab)
    assert _wait(lambda: snap(lab, rep["snapshot"]) is not None, 30), "the controller never finished the snapshot"
    s = snap(lab, rep["snapshot"])
    meta = parse_comment(s["comment"])
    assert meta["state"] == "pending" and not is_good(s) and meta["run"] == rep["run_id"]
    time.sleep(max(0.0, meta["until"] - time.time()) + 1.5)
    nxt = lab.run("backup", lab.one_host)
    assert nxt.returncode == 0, run_output(nxt)
    assert any("marked 1 orphaned snapshot(s) late" in r for r in nxt.report["recovery"]), nxt.report["recovery"]
    late = snap(lab, rep["snapshot"])
    if late is None:  # marked late, then deleted by the run's retention (late sets older than a good one go)
        assert rep["snapshot"] in {p for v in nxt.report["volumes"] for p in v["pruned"]}, nxt.report["volumes"]
    else:
        meta = parse_comment(late["comment"])
        assert meta["state"] == "late" and meta["consistency"] == "crash"
    good = parse_comment(snap(lab, nxt.report["snapshot"])["comment"])
    assert good["state"] == "good" and good["consistency"] == "suspended"
