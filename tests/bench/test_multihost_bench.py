"""The backup playbook with the VMs of one volume on several KVM hosts: 3 inventory hosts x 1 VM against
1 host x 3 VMs, the same 3 minimal guests on the same simulator volume, local connections.

With the direct fence the 3-host case holds every VM across Ansible's round trips (quiesce task -> snapshot task
-> release task). With the overlay fence each host's quiesce task releases its VM right after the overlay switch.
Target: with the overlay fence, the longest pause of the 3-host run <= 1.25 x the 1-host run's (medians of the
rounds, both measured here, in alternation), and the playbook's wall time with the overlay fence <= 1.2 x the
direct fence's on one host. The direct fence on 3 hosts is shown for reference.

Pause = the report's longest per-VM `pause_ms` (measured on the KVM host). KVMSNAP_BENCH_PLAYBOOK_ROUNDS overrides
ROUNDS.
"""

from __future__ import annotations

import os
import statistics

import pytest
from bench_report import Target, md_table, publish
from fence_rounds import playbook_round
from helpers.playbook_lab import Lab

pytestmark = [pytest.mark.needs_libvirtd]

ROUNDS = int(os.environ.get("KVMSNAP_BENCH_PLAYBOOK_ROUNDS", "3"))
SHARE = 1.25  # 3 hosts x 1 VM against 1 host x 3 VMs, overlay fence
WALL_SHARE = 1.2  # the backup run (the playbook) with the overlay fence against the direct fence, 1 host x 3 VMs
GUESTS = ("g1", "g2", "g3")


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("mhbench"), libvirt_system)
    try:
        yield lab.one_volume("mh", GUESTS)
    finally:
        lab.close()


def test_three_hosts_against_one(lab, libvirt_system):
    ctrl = {"c1": lab.controller("s1")}
    names = [lab.name(g) for g in GUESTS]
    one = lab.inventory({"kvm1": {"kvmsnap_vms": names}}, ctrl, kvmsnap_datastores=[lab.ds1])
    three = lab.inventory({"kvm%s" % c: {"kvmsnap_vms": [n]} for c, n in zip("ABC", names)}, ctrl,
                          kvmsnap_datastores=[lab.ds1])
    pause: dict[tuple[str, int], list[float]] = {}
    wall: dict[tuple[str, int], list[float]] = {}
    # overlay 1 and 3 hosts and direct on 1 host every round (the pause and wall-time targets); direct on 3 hosts
    # once, for reference (it holds the VMs across the round trips: seconds)
    plan = [(f, h) for _r in range(ROUNDS) for f, h in (("overlay", 1), ("overlay", 3), ("direct", 1))] + [("direct", 3)]
    for fence, hosts in plan:
        p, w = playbook_round(lab, one if hosts == 1 else three, fence)
        pause.setdefault((fence, hosts), []).append(p)
        wall.setdefault((fence, hosts), []).append(w)

    def med(d, key):
        return statistics.median(d[key])
    single = med(pause, ("overlay", 1))
    direct_wall = med(wall, ("direct", 1)) * 1000.0
    targets = [Target("3 hosts x 1 VM, overlay fence", "longest pause (ms)", med(pause, ("overlay", 3)),
                      SHARE * single, "<= %.2f x 1 host x 3 VMs (%.0f ms)" % (SHARE, single)),
               Target("1 host x 3 VMs, overlay fence", "playbook wall time (ms)", med(wall, ("overlay", 1)) * 1000.0,
                      WALL_SHARE * direct_wall, "<= %.1f x the direct fence's (%.0f ms)" % (WALL_SHARE, direct_wall))]
    rows = [[fence, "%d host%s x %d VM%s" % (h, "s" if h > 1 else "", 3 // h, "s" if h == 1 else ""),
             " / ".join("%.0f" % x for x in pause[(fence, h)]), " / ".join("%.1f" % x for x in wall[(fence, h)])]
            for fence, h in (("overlay", 1), ("overlay", 3), ("direct", 1), ("direct", 3))]
    publish("multihost", libvirt_system, [
        "The backup playbook (`kvmsnap.core.backup`) on 3 minimal guests of one simulator volume, local "
        "connections; longest VM pause from the report, each round's figure (%d rounds of overlay on 1 host, "
        "overlay on 3 hosts, direct on 1 host, in turn; direct on 3 hosts once, for reference). Wall time of "
        "`ansible-playbook`, the backup run as a user runs it." % ROUNDS],
        md_table(["kvmsnap_fence", "inventory", "longest pause (ms)", "playbook wall time (s)"], rows), targets)
