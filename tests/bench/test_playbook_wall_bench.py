"""The backup run as a user runs it: the wall time of the backup playbook (`ansible-playbook kvmsnap.core.backup`)
with the overlay fence against the direct fence, 1 host with 8 and with 32 minimal guests on one simulator volume,
the array's snapshot job at T = 0.15 s (the lab's default) and at T = 2 s, local connection.

Target: the playbook's wall time with the overlay fence <= 1.2 x the direct fence's, same VMs, same T (medians of
the rounds, both fences run in alternation). The longest pause of each run is shown beside it.
KVMSNAP_BENCH_PLAYBOOK_ROUNDS overrides ROUNDS.
"""

from __future__ import annotations

import os
import statistics

import pytest
from bench_report import Target, md_table, publish
from fence_rounds import array_time, playbook_round
from helpers.playbook_lab import Lab

pytestmark = [pytest.mark.needs_libvirtd]

ROUNDS = int(os.environ.get("KVMSNAP_BENCH_PLAYBOOK_ROUNDS", "2"))
WALL_SHARE = 1.2
COUNTS = (8, 32)
TIMES = (0.15, 2.0)
FENCES = ("overlay", "direct")


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("wallbench"), libvirt_system)
    try:
        yield lab.one_volume("pw", tuple("g%02d" % i for i in range(COUNTS[-1])))
    finally:
        lab.close()


def test_backup_playbook_wall_time_overlay_against_direct(lab, libvirt_system):
    ctrl = {"c1": lab.controller("s1")}
    keys = ["g%02d" % i for i in range(COUNTS[-1])]
    inventories = {n: lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name(k) for k in keys[:n]]}}, ctrl,
                                    kvmsnap_datastores=[lab.ds1]) for n in COUNTS}
    wall: dict[tuple[str, float, int], list[float]] = {}
    pause: dict[tuple[str, float, int], list[float]] = {}
    for t in TIMES:
        with array_time(lab.sims["s1"], t):
            for _r in range(ROUNDS):
                for n in COUNTS:
                    for fence in FENCES:
                        p, w = playbook_round(lab, inventories[n], fence)
                        wall.setdefault((fence, t, n), []).append(w)
                        pause.setdefault((fence, t, n), []).append(p)

    def med(d, key):
        return statistics.median(d[key])
    cols = [(t, n) for t in TIMES for n in COUNTS]
    head = ["fence", "figure"] + ["%d VMs, T = %.2f s" % (n, t) for t, n in cols]

    def cells(d, fence, fmt):
        return [" / ".join(fmt % x for x in d[(fence, t, n)]) for t, n in cols]
    rows = []
    for fence in FENCES:
        rows.append([fence, "playbook wall time (s)"] + cells(wall, fence, "%.1f"))
        rows.append([fence, "longest pause (ms)"] + cells(pause, fence, "%.0f"))
    ratios = ["%.2f" % (med(wall, ("overlay", t, n)) / med(wall, ("direct", t, n))) for t, n in cols]
    rows.append(["overlay / direct", "wall time (medians)"] + ratios)
    rule = "wall time <= %.1f x the direct fence's" % WALL_SHARE
    targets = [Target("backup playbook, %d VMs on 1 host" % n, "T = %.2f s" % t, med(wall, ("overlay", t, n)) * 1000,
                      WALL_SHARE * med(wall, ("direct", t, n)) * 1000, rule) for t, n in cols]
    publish("playbook-wall", libvirt_system, [
        "The backup playbook (`kvmsnap.core.backup`) on 8 and 32 minimal guests of one simulator volume, one "
        "inventory host, local connection; the simulator's snapshot job at T. Each round's figure (%d rounds; per "
        "round the overlay and the direct fence in turn). Wall time of `ansible-playbook`, the backup run as a user "
        "runs it: the overlays' commit is in it." % ROUNDS],
        md_table(head, rows), targets)
