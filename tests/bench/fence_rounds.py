"""One measured round of each way to hold VMs for a snapshot, shared by the fence benchmarks.

* backup_round = vm_backup's engine (run_backup: pre-flight, lock, journal, watchdog, parallel quiesce →
  create_snapshot_set → parallel release); pause = the report's longest VM pause (max_pause_ms).
* serial_round = the serial order, in-process: suspend VM 1..n one by one (libvirt API, one connection),
  snapshot, resume 1..n one by one.
* virsh_round  = Snap Creator's KVM plug-in: one `virsh suspend` / `virsh resume` process per VM and action,
  one after another, around the same snapshot call.

The array's snapshot job time is set on the simulator per call kind (array_time); everything else keeps
the simulator's default latency (0).
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import libvirt
from helpers.guest_fixtures import SYSTEM_URI
from helpers.playbook_lab import run_output

from ansible_collections.kvmsnap.core.plugins.module_utils import _backup_run

URI = SYSTEM_URI
# Every call kind on the snapshot path of the simulator: REST snapshot POST, REST CG creation and CG snapshot,
# ZAPI snapshot-create, snapshot-multicreate, cg-start and cg-commit. A kind the simulator does not know yet
# is stored and never read.
SNAPSHOT_KINDS = ("snapshot_create", "snapshot_multicreate", "cg_snapshot", "cg_commit", "cg_start", "cg_create")
# one volume, and two volumes of one SVM (a consistency group or cg-start/cg-commit)
VOLUME_SETS: dict[int, list[str]] = {1: ["svm1:vol_ds1"], 2: ["svm1:vol_ds1", "svm1:vol_ds2"]}


@dataclass
class Round:
    pause_ms: float          # longest VM pause: quiesced → released
    snapshot_ms: float       # the snapshot call alone, as the caller timed it
    method: str | None = None
    wall_ms: float = 0.0     # backup_round: run_backup from its call to its return (overlay commits included)


def ontap_params(sim: Any, transport: str = "rest") -> dict[str, Any]:
    """Connection options of the simulator for run_backup / connect (one try: a bench must not retry)."""
    p = dict(sim.conn(transport))
    p.update(timeout=60, retries=1, cert_file=None, key_file=None)
    return p


def volume_refs(volumes: list[str]) -> list[tuple[str, str]]:
    return [(v.split(":", 1)[0], v.split(":", 1)[1]) for v in volumes]


def _name(tag: str) -> str:
    return "bench_%s_%s" % (tag, uuid.uuid4().hex[:10])


def array_time(sim: Any, seconds: float) -> AbstractContextManager[None]:
    """The simulator's snapshot jobs take SECONDS (every kind in SNAPSHOT_KINDS); the old latencies after."""
    return sim.latency({k: seconds for k in SNAPSHOT_KINDS})


def backup_round(doms: list[Any], sim: Any, state_dir: str, volumes: list[str], transport: str = "rest",
                 fence: str = "direct", mode: str = "suspend") -> Round:
    """vm_backup's engine over DOMS with FENCE (``direct``: held for the snapshot; ``overlay``: each VM's disks
    switched to overlays first, committed after it) in MODE."""
    p: dict[str, Any] = dict(uri=URI, vms=[d.UUIDString() for d in doms], mode=mode, fence=fence, deadline=60,
                             state_dir=state_dir, agent_timeout=5, allow_crash_consistent=False, volumes=volumes,
                             datastores=None, vm_mapping=None, name=_name("p"), comment=None,
                             snapmirror_label=None, policy="daily")
    p.update(ontap_params(sim, transport))
    t0 = time.monotonic()
    res = _backup_run.run_backup(p)
    wall_ms = (time.monotonic() - t0) * 1000
    released = "thawed" if mode == "freeze" else "resumed"
    assert all(v["release_result"] == released and v.get("fence") == fence for v in res["vms"]), res["vms"]
    if fence == "overlay":
        assert all(o["result"] == "committed" and o["removed"] for v in res["vms"] for o in v["overlays"]), res["vms"]
    return Round(res["max_pause_ms"], res["snapshot_ms"], res.get("method"), wall_ms)


def _around_snapshot(suspend: Any, resume: Any, doms: list[Any], ontap: Any, volumes: list[str], tag: str) -> Round:
    t_q, t_r = [], []
    for d in doms:
        suspend(d)
        t_q.append(time.monotonic())
    t0 = time.monotonic()
    res = ontap.create_snapshot_set(volume_refs(volumes), _name(tag))
    snap_ms = (time.monotonic() - t0) * 1000
    for d in doms:
        resume(d)
        t_r.append(time.monotonic())
    return Round(max((r - q) * 1000 for q, r in zip(t_q, t_r)), snap_ms, res.get("method"))


def serial_round(doms: list[Any], ontap: Any, volumes: list[str]) -> Round:
    return _around_snapshot(lambda d: d.suspend(), lambda d: d.resume(), doms, ontap, volumes, "s")


def _virsh(action: str, dom: Any) -> None:
    subprocess.run(["virsh", "-q", "-c", URI, action, dom.name()], check=True, capture_output=True)


def virsh_round(doms: list[Any], ontap: Any, volumes: list[str]) -> Round:
    """Snap Creator's KVM plug-in: a virsh process per VM and action, serially."""
    return _around_snapshot(lambda d: _virsh("suspend", d), lambda d: _virsh("resume", d), doms, ontap, volumes, "v")


def suspend_resume_ms(dom: Any, repeat: int = 15) -> float:
    """Median cost of suspending and resuming one VM through libvirt (the per-VM share of a fence)."""
    costs = []
    for _i in range(repeat):
        t0 = time.monotonic()
        dom.suspend()
        dom.resume()
        costs.append((time.monotonic() - t0) * 1000)
    return statistics.median(costs)


def _timed_call(dom: Any, op: str, start: threading.Barrier, ends: list[float]) -> None:
    start.wait()
    getattr(dom, op)()
    ends.append(time.monotonic())


def parallel_floor_ms(doms: list[Any], slots: int = 8, repeat: int = 5) -> float:
    """What libvirt alone adds to the longest pause when it suspends and resumes DOMS in parallel on this host
    (no snapshot, no fence code): the spread of the suspends (first to last to return) plus the wait for the
    first resume, over SLOTS connections as the fence uses them; median of REPEAT rounds. No parallel fence
    can add less than this to the array's time."""
    conns = [libvirt.open(URI) for _i in range(slots)]
    try:
        ds = [conns[i % slots].lookupByUUIDString(d.UUIDString()) for i, d in enumerate(doms)]
        figures = []
        for _round in range(repeat):
            done: dict[str, list[float]] = {}
            for op in ("suspend", "resume"):
                start = threading.Barrier(len(ds) + 1)
                ends: list[float] = []
                threads = [threading.Thread(target=_timed_call, args=(d, op, start, ends)) for d in ds]
                for t in threads:
                    t.start()
                start.wait()
                t0 = time.monotonic()
                for t in threads:
                    t.join()
                done[op] = [t0] + sorted(ends)
            suspend, resume = done["suspend"], done["resume"]
            figures.append(((suspend[-1] - suspend[1]) + (resume[1] - resume[0])) * 1000)
            time.sleep(0.05)
        return statistics.median(figures)
    finally:
        for c in conns:
            c.close()


def playbook_round(lab: Any, inventory: Any, fence: str) -> tuple[float, float]:
    """The backup playbook on INVENTORY of the playbook lab LAB with kvmsnap_fence FENCE: (longest pause in ms from
    the report, wall time of ansible-playbook in s). Every VM must have got FENCE and the run must be ok."""
    t0 = time.monotonic()
    proc = lab.run("backup", inventory, {"kvmsnap_fence": fence})
    wall = time.monotonic() - t0
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "ok", rep
    assert {v["fence"] for v in rep["vms"]} == {fence}, rep["vms"]
    return max(v["pause_ms"] for v in rep["vms"]), wall
