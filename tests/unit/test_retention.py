"""Retention parsing and prune selection (pure logic)."""

from __future__ import annotations

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._retention import (
    RetentionError,
    parse_retention,
    select_prunable,
    select_prunable_sets,
    validate_keep,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import build_comment


def snap(i, policy="daily", ours=True, state="valid", name=None, trust="good", until=None):
    """Snapshot I of a volume; TRUST is the kvmsnap trust state in its comment (None: old format, no state=)."""
    comment = "x"
    if ours:
        comment = build_comment(policy, "r%d" % i, state=trust or "pending", until=until)
        if trust is None:
            comment = comment.replace(" state=pending", "")
    return {"name": name or ("kvmsnap-%s_202601%02dT000000Z" % (policy, i) if ours else "hourly.%d" % i),
            "comment": comment, "create_time": 1000 + i, "state": state}


def names(items):
    return [s["name"] for s in items]


def test_parse_string_and_dict():
    assert parse_retention("daily:7,weekly:4") == {"daily": 7, "weekly": 4}
    assert parse_retention(" daily : 7 , ") == {"daily": 7}
    assert parse_retention({"daily": 3}) == {"daily": 3}
    assert parse_retention({"daily": "3"}) == {"daily": 3}


@pytest.mark.parametrize("spec,needle", [
    ("daily:0", "out of range"), ("daily:-1", "not an integer"), ("daily:3.5", "not an integer"),
    ("daily:abc", "not an integer"), ("daily", "has no ':'"), ("daily:7,,weekly:4", "entry 2 is empty"),
    ("daily:7,daily:3", "repeats"), ("", "not valid"), (None, "not valid"), ({}, "empty"),
    ({"daily": True}, "boolean"), ({"daily": 1024}, "out of range"), ({"dai ly": 1}, "policy"),
    ({"daily": 2.0}, "not an integer"),
])
def test_parse_errors(spec, needle):
    with pytest.raises(RetentionError) as err:
        parse_retention(spec)
    assert needle in str(err.value)


@pytest.mark.parametrize("keep", [True, False, 0, 1024, -3, 1.5, "x", None])
def test_keep_refused(keep):
    with pytest.raises(RetentionError):
        validate_keep(keep)


def test_select_keeps_newest_and_ignores_foreign():
    snaps = [snap(i) for i in range(1, 6)] + [snap(i, ours=False) for i in range(1, 4)] + [snap(9, "weekly")]
    out = select_prunable(snaps, "daily", 2, now=5000)
    assert names(out) == ["kvmsnap-daily_20260101T000000Z", "kvmsnap-daily_20260102T000000Z",
                          "kvmsnap-daily_20260103T000000Z"]
    assert select_prunable(snaps, "daily", 5, now=5000) == []
    assert select_prunable(snaps, "weekly", 1, now=5000) == []


def test_never_the_newest_good_one():
    # the two newest are invalid on the controller (failed runs): the newest *good* one survives
    snaps = [snap(1), snap(2), snap(3, state="invalid"), snap(4, state="partial")]
    out = names(select_prunable(snaps, "daily", 1, now=5000))
    assert out == ["kvmsnap-daily_20260101T000000Z"]


def test_foreign_marker_without_prefix_is_not_pruned():
    snaps = [snap(1, name="manual_copy"), snap(2), snap(3)]
    assert names(select_prunable(snaps, "daily", 1, now=5000)) == ["kvmsnap-daily_20260102T000000Z"]


def test_exclude():
    snaps = [snap(1), snap(2), snap(3)]
    out = select_prunable(snaps, "daily", 1, exclude=["kvmsnap-daily_20260101T000000Z"], now=5000)
    assert names(out) == ["kvmsnap-daily_20260102T000000Z"]


def test_four_late_do_not_push_out_the_good_one():
    """The failure seen: 'it pruned a genuinely good backup while four late ones stayed'. keep=1 over one good backup
    and four late ones (two older, two newer): the good one stays, the late ones older than it go."""
    snaps = [snap(1, trust="late"), snap(2, trust="late"), snap(3), snap(4, trust="late"), snap(5, trust="late")]
    out = names(select_prunable(snaps, "daily", 1, now=5000))
    assert out == ["kvmsnap-daily_20260101T000000Z", "kvmsnap-daily_20260102T000000Z"]


def test_only_good_ones_count_toward_keep():
    snaps = [snap(1), snap(2), snap(3, trust="late"), snap(4, trust="late"), snap(5)]
    # keep 2 good: 2 and 5 stay; 1 (good, beyond keep) goes; lates 3/4 are newer than the oldest kept good: stay
    assert names(select_prunable(snaps, "daily", 2, now=5000)) == ["kvmsnap-daily_20260101T000000Z"]


def test_pending_orphaned_and_old_format():
    snaps = [snap(1, trust="pending", until=9999), snap(2, trust="pending", until=100), snap(3, trust=None),
             snap(4), snap(5, trust="pending", until=9999)]
    # live pending (until in the future) never goes; orphaned pending and old-format ones count as late
    out = names(select_prunable(snaps, "daily", 1, now=5000))
    assert out == ["kvmsnap-daily_20260102T000000Z", "kvmsnap-daily_20260103T000000Z"]


def test_no_good_set_prunes_nothing():
    snaps = [snap(i, trust="late") for i in range(1, 6)]
    assert select_prunable(snaps, "daily", 1, now=5000) == []


def test_sets_are_decided_across_volumes():
    a = [snap(1), snap(2), snap(3)]
    # set 2 is good on one volume but still pending (live) on the other: the set is pending, never pruned,
    # and does not count as good; set 3 is the newest good set
    b = [snap(1), snap(2, trust="pending", until=9999), snap(3)]
    sets = select_prunable_sets({"a": a, "b": b}, "daily", 1, now=5000)
    assert [s["name"] for s in sets] == ["kvmsnap-daily_20260101T000000Z"]
    assert sorted(sets[0]["members"]) == ["a", "b"]
    # a set late on one volume is late as a whole (never good): with keep=1 and set 3 good, 2 goes too
    b[1] = snap(2, trust="late")
    assert [s["name"] for s in select_prunable_sets({"a": a, "b": b}, "daily", 1, now=5000)] == [
        "kvmsnap-daily_20260101T000000Z", "kvmsnap-daily_20260102T000000Z"]
    # only on volume b the newest set is good: it is the set's trust that counts, so set 3 still stays
    a2 = [snap(1), snap(2), snap(3, trust="late")]
    out = select_prunable_sets({"a": a2, "b": [snap(1), snap(2), snap(3)]}, "daily", 1, now=5000)
    assert [s["name"] for s in out] == ["kvmsnap-daily_20260101T000000Z"]
