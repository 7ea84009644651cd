"""Guest pause benchmarks: the longest VM pause against the array's snapshot job time and against the VM count.

Guests: minimal boot-sector guests (cli;hlt) on the lab libvirtd (real QEMU processes under TCG, real
virDomainSuspend/Resume through libvirtd), suspend mode. Array: the lab ONTAP simulator with every snapshot-path
call kind (fence_rounds.SNAPSHOT_KINDS) set to take T seconds, everything else 0. The methods are measured in
the same run, interleaved, ROUNDS rounds; the lab machine is shared (2 cores, other suites and TCG guests), so
targets are checked on the best of the rounds (the inherent cost, least disturbed); medians are shown beside.

1. test_pause_against_array_time: vm_backup's engine at T in TIMES, one and two volumes, REST and ZAPI, 4 and
   32 VMs, with Snap Creator's virsh loop at 32 VMs as the baseline. Targets (SLACK_MS = 40 ms):
   - 4 VMs:  longest pause <= T + SLACK_MS (T = the snapshot call's array time; for ZAPI with two volumes that
     is cg-start's time: the point in time exists once cg-start answered);
   - 32 VMs: longest pause <= T + SLACK_MS + what libvirt alone needs to suspend and resume the 32 VMs in
     parallel, measured in this run (fence_rounds.parallel_floor_ms); the bound with one VM's suspend+resume
     instead is shown beside it, not checked (libvirt's own parallel spread exceeds it on the 2-core lab);
   - 32 VMs: longest pause <= VIRSH_SHARE x Snap Creator's virsh loop at the same array time (shown, not
     checked, where that bound is below T itself: no fence can meet it);
   and no pause may be shorter than T (the VMs released before the point in time existed, or T not applied).
2. test_pause_against_vm_count: 1..32 VMs, one volume, REST, T = 0.15 s: the parallel fence against the
   in-process serial loop and Snap Creator's virsh loop; the parallel fence must grow < 2 ms per extra VM and
   stay far below the virsh loop.

Both write their figures into docs/performance.md (generated sections) and a plot under docs/img/ before they
assert, so a run that misses a target still records what it measured. KVMSNAP_BENCH_ROUNDS overrides ROUNDS
(1 for a quick look; `make bench` takes ~6 minutes with 3 on the 2-core lab, test_overlay_bench.py included).
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict

import pytest
from bench_report import Target, failed, machine_facts, md_table, plot, summary, targets_table, write_section
from fence_rounds import (
    VOLUME_SETS,
    Round,
    array_time,
    backup_round,
    ontap_params,
    parallel_floor_ms,
    serial_round,
    suspend_resume_ms,
    virsh_round,
)

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]
ROUNDS = int(os.environ.get("KVMSNAP_BENCH_ROUNDS", "3"))
TIMES = (0.15, 0.35, 0.8)          # the array's snapshot job time T, seconds
FEW, MANY = 4, 32                  # VM counts of the array-time benchmark
COUNTS = (1, 4, 8, 16, 32)         # VM counts of the VM-count benchmark
VM_COUNT_T = 0.15                  # its array time (the simulator's default snapshot latency)
TRANSPORTS = ("rest", "zapi")
SLACK_MS = 40.0                    # what the fence may add to the array's time
VIRSH_SHARE = 0.35                 # of Snap Creator's virsh loop, at 32 VMs
FLOOR_SLACK_MS = 5.0               # timer granularity: no pause may be shorter than T - this


def best(rounds: list[Round]) -> float:
    return min(r.pause_ms for r in rounds)


def median(rounds: list[Round]) -> float:
    return statistics.median(r.pause_ms for r in rounds)


def cell(rounds: list[Round]) -> str:
    return "%.0f (%.0f)" % (best(rounds), median(rounds))


def case(transport: str, nvol: int, n: int) -> str:
    return "%s, %d volume%s, %d VMs" % (transport.upper(), nvol, "s" if nvol > 1 else "", n)


def test_pause_against_array_time(minimal_guests, ontap_sim, tmp_path, libvirt_system):
    doms = minimal_guests(MANY)
    sd = str(tmp_path / "state")
    ontaps = {t: connect(ontap_params(ontap_sim, t)) for t in TRANSPORTS}
    cost = suspend_resume_ms(doms[0])
    floor = parallel_floor_ms(doms)
    fence: dict[tuple[str, int, float, int], list[Round]] = defaultdict(list)
    virsh: dict[tuple[str, int, float], list[Round]] = defaultdict(list)
    for t in TIMES:
        with array_time(ontap_sim, t):
            for transport in TRANSPORTS:   # warm-up: connections, caches
                backup_round(doms[:1], ontap_sim, sd, VOLUME_SETS[1], transport)
            for _round in range(ROUNDS):
                for transport in TRANSPORTS:
                    for nvol, vols in VOLUME_SETS.items():
                        for n in (FEW, MANY):
                            fence[(transport, nvol, t, n)].append(backup_round(doms[:n], ontap_sim, sd, vols,
                                                                               transport))
                        virsh[(transport, nvol, t)].append(virsh_round(doms, ontaps[transport], vols))

    targets = array_targets(fence, virsh, cost, floor)
    head = ["transport", "volumes", "method", "VMs"] + ["T = %.2f s" % t for t in TIMES]
    rows = []
    for transport in TRANSPORTS:
        for nvol in VOLUME_SETS:
            method = fence[(transport, nvol, TIMES[0], FEW)][0].method or "?"
            for n in (FEW, MANY):
                rows.append([transport.upper(), str(nvol), method, str(n)]
                            + [cell(fence[(transport, nvol, t, n)]) for t in TIMES])
            rows.append([transport.upper(), str(nvol), "Snap Creator's virsh loop", str(MANY)]
                        + [cell(virsh[(transport, nvol, t)]) for t in TIMES])
    # the plot shows what the fence adds to the array's time: the 40 ms target is a flat line
    series, dashed = {}, {}
    for panel, n in enumerate((FEW, MANY)):
        for transport in TRANSPORTS:
            for nvol in VOLUME_SETS:
                series["%d|%s, %d volume%s" % (panel, transport.upper(), nvol, "s" if nvol > 1 else "")] = (
                    list(TIMES), [above(best(fence[(transport, nvol, t, n)]), t) for t in TIMES])
        extra = floor if n == MANY else 0.0
        dashed["%d|target: %.0f ms%s" % (panel, SLACK_MS, " + libvirt's parallel suspend/resume" if extra else "")] = (
            list(TIMES), [SLACK_MS + extra] * len(TIMES))
    dashed["1|Snap Creator's virsh loop (REST, 1 volume)"] = (
        list(TIMES), [above(best(virsh[("rest", 1, t)]), t) for t in TIMES])
    img = plot("pause-vs-array", "What the fence adds to the array's snapshot job time T (longest VM pause - T)",
               "array snapshot job time T (s)", series, dashed, xticks=list(TIMES), ylabel="longest VM pause - T (ms, log scale)",
               ylog=True, panels=2, panel_titles=["%d VMs" % FEW, "%d VMs" % MANY])
    body = "\n\n".join([
        "Measured %s." % machine_facts(libvirt_system),
        "Best of %d rounds, median in brackets, in ms. One VM's suspend+resume through libvirt in this run: "
        "%.1f ms (median of 15). What libvirt alone adds when it suspends and resumes the %d VMs in parallel (the "
        "spread of the suspends plus the wait for the first resume, no snapshot, no fence code): %.1f ms (median "
        "of 5); no parallel fence on this host can add less." % (ROUNDS, cost, MANY, floor),
        "![What the fence adds to the array's snapshot job time](%s)" % img,
        md_table(head, rows),
        summary(targets) + " A cell is longest pause / bound, in ms.",
        targets_table(targets)])
    write_section("pause-vs-array", body)
    print("\n" + body)
    # every pause holds the VMs at least for the array's time T: a shorter one released them before the point
    # in time existed, or the simulator did not apply T to the call the fence waits for (SNAPSHOT_KINDS)
    short = ["%s, T = %.2f s: %.1f ms" % (case(tr, nvol, n), t, r.pause_ms)
             for (tr, nvol, t, n), rounds in fence.items() for r in rounds if r.pause_ms < t * 1000 - FLOOR_SLACK_MS]
    assert not short, "pause shorter than the array's snapshot time:\n" + "\n".join(short)
    if failed(targets):
        pytest.fail("targets missed (figures written to docs/performance.md):\n" + failed(targets), pytrace=False)


def above(pause_ms: float, t: float) -> float:
    """What the fence adds to the array's time T (at least 1 ms, for the log scale)."""
    return max(pause_ms - t * 1000, 1.0)


def array_targets(fence: dict[tuple[str, int, float, int], list[Round]], virsh: dict[tuple[str, int, float], list[Round]],
                  cost: float, floor: float) -> list[Target]:
    """The targets, on the best round of each case. At 32 VMs the fence may add to T + 40 ms what libvirt itself
    needs to suspend and resume that many VMs in parallel on this host (FLOOR, measured in the same run); the
    bound with one VM's sequential suspend/resume (COST) instead is shown beside it, not checked: on this 2-core
    host libvirt's own parallel spread already exceeds it."""
    targets = []
    for transport in TRANSPORTS:
        for nvol in VOLUME_SETS:
            # the array time the fence must wait for: the snapshot call, or cg-start (the point in time exists
            # once cg-start answered; cg-commit may run after the release)
            rule = "cg-start time" if transport == "zapi" and nvol > 1 else "T"
            for t in TIMES:
                few, many = best(fence[(transport, nvol, t, FEW)]), best(fence[(transport, nvol, t, MANY)])
                col, array_ms = "T = %.2f s" % t, t * 1000
                targets += [
                    Target(case(transport, nvol, FEW), col, few, array_ms + SLACK_MS,
                           "%s + %.0f ms" % (rule, SLACK_MS), array_ms),
                    Target(case(transport, nvol, MANY), col, many, array_ms + SLACK_MS + floor,
                           "%s + %.0f ms + libvirt's parallel suspend/resume of %d VMs" % (rule, SLACK_MS, MANY),
                           array_ms),
                    Target(case(transport, nvol, MANY), col, many, array_ms + SLACK_MS + cost,
                           "%s + %.0f ms + one VM's suspend/resume" % (rule, SLACK_MS), array_ms,
                           shown_only="reference: below libvirt's own parallel spread here"),
                    Target(case(transport, nvol, MANY), col, many, VIRSH_SHARE * best(virsh[(transport, nvol, t)]),
                           "%.2f x Snap Creator's virsh loop" % VIRSH_SHARE, array_ms + floor)]
    return targets


def test_pause_against_vm_count(minimal_guests, ontap_sim, tmp_path, libvirt_system):
    doms = minimal_guests(COUNTS[-1])
    sd = str(tmp_path / "state")
    ontap = connect(ontap_params(ontap_sim))
    vols = VOLUME_SETS[1]
    fig: dict[tuple[str, int], list[Round]] = defaultdict(list)
    with array_time(ontap_sim, VM_COUNT_T):
        backup_round(doms[:1], ontap_sim, sd, vols)   # warm-up
        serial_round(doms[:1], ontap, vols)
        for _round in range(ROUNDS):
            for n in COUNTS:
                fig[("parallel", n)].append(backup_round(doms[:n], ontap_sim, sd, vols))
                fig[("serial", n)].append(serial_round(doms[:n], ontap, vols))
                fig[("virsh", n)].append(virsh_round(doms[:n], ontap, vols))

    one, many = COUNTS[0], COUNTS[-1]
    growth = {m: (best(fig[(m, many)]) - best(fig[(m, one)])) / (many - one) for m in ("parallel", "serial", "virsh")}
    ratio = {m: best(fig[(m, many)]) / best(fig[(m, one)]) for m in ("parallel", "serial", "virsh")}
    median_ratio = {m: median(fig[(m, many)]) / median(fig[(m, one)]) for m in ("parallel", "serial")}
    share = Target("REST, 1 volume, %d VMs" % many, "T = %.2f s" % VM_COUNT_T, best(fig[("parallel", many)]),
                   VIRSH_SHARE * best(fig[("virsh", many)]), "%.2f x Snap Creator's virsh loop" % VIRSH_SHARE,
                   VM_COUNT_T * 1000)
    labels = {"parallel": "parallel fence (kvmsnap)", "serial": "in-process serial loop",
              "virsh": "Snap Creator's `virsh` loop (baseline)"}
    rows = [[labels[m]] + [cell(fig[(m, n)]) for n in COUNTS] + ["%.2f" % ratio[m], "%.2f ms" % growth[m]]
            for m in labels]
    img = plot("pause-vs-vms", "Longest VM pause against the number of VMs (one volume, REST, T = %.2f s)" % VM_COUNT_T,
               "VMs", {labels[m].replace("`", ""): (list(COUNTS), [best(fig[(m, n)]) for n in COUNTS])
                       for m in labels}, {"array time T": (list(COUNTS), [VM_COUNT_T * 1000] * len(COUNTS))},
               xticks=list(COUNTS))
    body = "\n\n".join([
        "Measured %s." % machine_facts(libvirt_system),
        "One volume, REST, array time T = %.2f s. Best of %d rounds, median in brackets, in ms." % (VM_COUNT_T, ROUNDS),
        "![Longest VM pause against the number of VMs](%s)" % img,
        md_table(["method"] + ["%d VM%s" % (n, "s" if n > 1 else "") for n in COUNTS]
                 + ["ratio %d/%d" % (many, one), "added per extra VM"], rows),
        "At %d VMs the parallel fence's longest pause is %.2f x Snap Creator's loop; it grows %.0f x more slowly "
        "per VM." % (many, best(fig[("parallel", many)]) / best(fig[("virsh", many)]),
                     growth["virsh"] / max(growth["parallel"], 0.01)),
        summary([share]),
        targets_table([share])])
    write_section("pause-vs-vms", body)
    print("\n" + body)
    if not share.met:
        pytest.fail("target missed (figures written to docs/performance.md):\n" + failed([share]), pytrace=False)
    # the goal: under 2 ms per extra VM (best of the rounds: the machine is shared)
    assert growth["parallel"] < 2.0, "parallel fence: longest pause grows %.2f ms per extra VM" % growth["parallel"]
    assert ratio["parallel"] < 1.4, "parallel fence: %d-VM pause is %.2fx the 1-VM pause" % (many, ratio["parallel"])
    # same run, same guests: never worse than the in-process serial order beyond noise, and far better than
    # Snap Creator's process-per-VM loop
    assert median_ratio["parallel"] < median_ratio["serial"] * 1.15, "the parallel fence scales worse than serial"
    assert growth["parallel"] * 5 < growth["virsh"], "the parallel fence should grow far slower than a virsh loop"
