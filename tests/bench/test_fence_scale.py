"""Fence scale benchmark: longest VM pause at 1 vs 32 VMs, kvmsnap's parallel fence vs a serial baseline.

Guests: minimal boot-sector guests (cli;hlt) on the lab libvirtd (real QEMU processes under TCG, real
virDomainSuspend/Resume through libvirtd). Snapshot: the lab ONTAP simulator (default ~150 ms latency on a
snapshot create), one volume. Both methods are measured in the same run, interleaved, ROUNDS rounds. The lab
machine is shared (2 cores, other suites and TCG guests running), so the best of the rounds (the inherent
cost, least disturbed) is compared; the medians are printed too.

* parallel = vm_backup's engine (run_backup: pre-flight, lock, journal, watchdog, parallel quiesce →
  create_snapshot_set → parallel release); pause = quiesce complete → release complete per VM.
* serial   = the serial order, in-process: suspend VM 1..n one by one (libvirt API, one connection),
  snapshot, resume 1..n one by one.
* virsh    = Snap Creator's way: one `virsh suspend` / `virsh resume` process per VM, one after another.

On this 2-core lab a minimal guest's suspend costs libvirtd ~1 ms of CPU whoever calls it, so the
parallel fence and the in-process serial baseline come out close here; the parallel fence wins where
each quiesce waits on something (guest-agent freezes, busy hosts). Against Snap Creator's process-per-VM
loop the difference is an order of magnitude. Asserts on ratios and per-VM growth, prints the figures.
"""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid

import pytest
from helpers.guest_fixtures import SYSTEM_URI

from ansible_collections.kvmsnap.core.plugins.module_utils import _backup_run
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]
URI = SYSTEM_URI
N = 32
ROUNDS = 5


def _ontap_params(sim):
    p = dict(sim.conn())
    p.update(timeout=60, retries=1, cert_file=None, key_file=None)
    return p


def parallel_round(doms, sim, state_dir):
    p = dict(uri=URI, vms=[d.UUIDString() for d in doms], mode="suspend", deadline=60, state_dir=state_dir,
             agent_timeout=5, allow_crash_consistent=False, volumes=["svm1:vol_ds1"], datastores=None,
             vm_mapping=None, name="bench_p_%s" % uuid.uuid4().hex[:10], comment=None, snapmirror_label=None,
             policy="daily")
    p.update(_ontap_params(sim))
    res = _backup_run.run_backup(p)
    assert all(v["release_result"] == "resumed" for v in res["vms"]), res["vms"]
    return max(v["pause_ms"] for v in res["vms"]), res["snapshot_ms"]


def serial_round(doms, ontap):
    t_q, t_r = [], []
    for d in doms:
        d.suspend()
        t_q.append(time.monotonic())
    t0 = time.monotonic()
    ontap.create_snapshot_set([("svm1", "vol_ds1")], "bench_s_%s" % uuid.uuid4().hex[:10])
    snap_ms = (time.monotonic() - t0) * 1000
    for d in doms:
        d.resume()
        t_r.append(time.monotonic())
    return max((r - q) * 1000 for q, r in zip(t_q, t_r)), snap_ms


def virsh_round(doms, ontap):
    """Snap Creator's KVM plug-in: a virsh process per VM and action, serially."""
    t_q, t_r = [], []
    for d in doms:
        subprocess.run(["virsh", "-q", "-c", URI, "suspend", d.name()], check=True, capture_output=True)
        t_q.append(time.monotonic())
    t0 = time.monotonic()
    ontap.create_snapshot_set([("svm1", "vol_ds1")], "bench_v_%s" % uuid.uuid4().hex[:10])
    snap_ms = (time.monotonic() - t0) * 1000
    for d in doms:
        subprocess.run(["virsh", "-q", "-c", URI, "resume", d.name()], check=True, capture_output=True)
        t_r.append(time.monotonic())
    return max((r - q) * 1000 for q, r in zip(t_q, t_r)), snap_ms


def test_fence_scale_parallel_vs_serial(minimal_guests, ontap_sim, tmp_path):
    doms = minimal_guests(N)
    ontap = connect(_ontap_params(ontap_sim))
    sd = str(tmp_path / "state")
    # warm-up (connections, caches)
    parallel_round(doms[:1], ontap_sim, sd)
    serial_round(doms[:1], ontap)
    fig = {(m, n): [] for m in ("parallel", "serial", "virsh") for n in (1, N)}
    snaps = []
    for _round in range(ROUNDS):
        for n in (1, N):
            pmax, ps = parallel_round(doms[:n], ontap_sim, sd)
            smax, ss = serial_round(doms[:n], ontap)
            vmax, vs = virsh_round(doms[:n], ontap)
            fig[("parallel", n)].append(pmax)
            fig[("serial", n)].append(smax)
            fig[("virsh", n)].append(vmax)
            snaps += [ps, ss, vs]
    best = {k: min(v) for k, v in fig.items()}
    median = {k: statistics.median(v) for k, v in fig.items()}
    med = best
    p_growth = (med[("parallel", N)] - med[("parallel", 1)]) / (N - 1)
    s_growth = (med[("serial", N)] - med[("serial", 1)]) / (N - 1)
    p_ratio = med[("parallel", N)] / med[("parallel", 1)]
    s_ratio = med[("serial", N)] / med[("serial", 1)]
    print("\nfence scale on %s, minimal guests, ONTAP simulator (best of %d rounds; snapshot call median %.1f ms)"
          % (URI, ROUNDS, statistics.median(snaps)))
    print("  longest pause   1 VM: parallel %7.1f ms   serial %7.1f ms" % (med[("parallel", 1)], med[("serial", 1)]))
    print("  longest pause %2d VMs: parallel %7.1f ms   serial %7.1f ms" % (N, med[("parallel", N)], med[("serial", N)]))
    print("  ratio %d/1: parallel %.2f   serial %.2f;  growth per extra VM: parallel %.2f ms   serial %.2f ms"
          % (N, p_ratio, s_ratio, p_growth, s_growth))
    print("  medians: parallel 1 VM %.1f, %d VMs %.1f ms; serial 1 VM %.1f, %d VMs %.1f ms" % (
        median[("parallel", 1)], N, median[("parallel", N)], median[("serial", 1)], N, median[("serial", N)]))
    print("  raw:", {"%s-%d" % k: [round(x, 1) for x in v] for k, v in fig.items()})
    m_p_ratio = median[("parallel", N)] / median[("parallel", 1)]
    m_s_ratio = median[("serial", N)] / median[("serial", 1)]
    v_growth = (med[("virsh", N)] - med[("virsh", 1)]) / (N - 1)
    print("  median ratio %d/1: parallel %.2f   serial %.2f" % (N, m_p_ratio, m_s_ratio))
    print("  Snap Creator's virsh loop: 1 VM %.1f ms, %d VMs %.1f ms, growth per extra VM %.2f ms (%.0fx parallel)"
          % (med[("virsh", 1)], N, med[("virsh", N)], v_growth, v_growth / max(p_growth, 0.01)))
    # the goal: under 2 ms per extra VM (best of the rounds: the machine is shared)
    assert p_growth < 2.0, "parallel fence: longest pause grows %.2f ms per extra VM" % p_growth
    assert p_ratio < 1.4, "parallel fence: 32-VM pause is %.2fx the 1-VM pause" % p_ratio
    # same run, same guests: never worse than the in-process serial order beyond noise, and far better than
    # Snap Creator's process-per-VM loop
    assert m_p_ratio < m_s_ratio * 1.15, "the parallel fence scales worse than the serial baseline"
    assert p_growth * 5 < v_growth, "the parallel fence should grow far slower than a virsh loop"
