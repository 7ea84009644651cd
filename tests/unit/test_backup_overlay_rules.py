"""vm_backup's fence choice per VM and the trust rule of the overlay window (pure functions)."""

from __future__ import annotations

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._backup_overlay import TEST_DRIVER_REASON, choose
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_errors import FenceError
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_window import window_faults

VMS = [{"uuid": "u1", "name": "a", "state": "running"}, {"uuid": "u2", "name": "b", "state": "running"},
       {"uuid": "u3", "name": "c", "state": "shutoff"}]
PLANS = [{"uuid": "u1", "name": "a", "fence": "overlay", "reason": None, "overlays": [{"target": "vda"}]},
         {"uuid": "u2", "name": "b", "fence": "direct", "reason": "disk vda (/dev/sdb): a block device (LUN)",
          "overlays": []},
         {"uuid": "u3", "name": "c", "fence": "direct", "reason": "shut off: nothing to quiesce (offline)",
          "overlays": []}]
URI = "qemu:///system"


def test_direct_gives_every_vm_the_direct_fence():
    out = choose("direct", VMS, PLANS, URI)
    assert [(p["fence"], p["reason"]) for p in out] == [("direct", "fence=direct")] * 3


def test_auto_takes_the_plans_with_their_reasons():
    out = choose("auto", VMS, PLANS, URI)
    assert [p["fence"] for p in out] == ["overlay", "direct", "direct"]
    assert "block device" in out[1]["reason"]


def test_overlay_refuses_a_running_vm_that_cannot_take_it_but_not_a_shut_off_one():
    with pytest.raises(FenceError) as err:
        choose("overlay", VMS, PLANS, URI)
    assert "b (u2)" in str(err.value) and "block device" in str(err.value) and "c (u3)" not in str(err.value)
    out = choose("overlay", [VMS[0], VMS[2]], PLANS, URI)
    assert [p["fence"] for p in out] == ["overlay", "direct"]


def test_test_driver_is_direct_under_auto_and_refused_under_overlay():
    out = choose("auto", VMS, None, "test:///default")
    assert {p["fence"] for p in out} == {"direct"} and out[0]["reason"] == TEST_DRIVER_REASON
    with pytest.raises(FenceError):
        choose("overlay", VMS, None, "test:///default")
    with pytest.raises(FenceError):
        choose("sideways", VMS, PLANS, URI)


W = [{"name": "a", "overlay_at": 1000.40, "commit_started_at": 1002.70},
     {"name": "b", "overlay_at": 1000.90, "commit_started_at": 1002.70}]


def test_snapshot_inside_every_window_is_good():
    assert window_faults([1001, 1002], W, taken_at=1001.5) == []
    # the controller's whole seconds: a create time in the overlay's own second counts as inside
    assert window_faults([1000], W, taken_at=1000.95) == []
    assert window_faults([1003], W, taken_at=1002.5) == []  # ceil of the commit's start
    assert window_faults([None], W, taken_at=1001.0) == []  # not read back: the host's order decides


def test_snapshot_before_an_overlay_point_is_not_good():
    faults = window_faults([999], W, taken_at=1001.0)
    assert len(faults) == 2 and "before its overlay point" in faults[0]


def test_snapshot_after_a_commit_started_is_not_good():
    faults = window_faults([1004], W, taken_at=1002.0)
    assert len(faults) == 2 and all("after its commit started" in f for f in faults)
    # the host saw the take end after the commit started, whatever the controller's clock says
    faults = window_faults([1001], W[:1], taken_at=1003.0)
    assert faults == ["VM a: the snapshot ended at 1003.000, after its commit started at 1002.700"]
    assert "never ended" in window_faults([1001], W[:1], taken_at=None)[0]


def test_vm_without_an_overlay_has_no_window():
    assert window_faults([5], [{"name": "x", "overlay_at": None, "commit_started_at": None}], None) == []
