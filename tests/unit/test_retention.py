"""Retention parsing and prune selection (pure logic)."""

from __future__ import annotations

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._retention import (
    RetentionError,
    parse_retention,
    select_prunable,
    validate_keep,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import build_comment


def snap(i, policy="daily", ours=True, state="valid", name=None):
    return {"name": name or ("kvmsnap-%s_202601%02dT000000Z" % (policy, i) if ours else "hourly.%d" % i),
            "comment": build_comment(policy, "r%d" % i) if ours else "x", "create_time": 1000 + i, "state": state}


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
    out = select_prunable(snaps, "daily", 2)
    assert [s["name"] for s in out] == ["kvmsnap-daily_20260101T000000Z", "kvmsnap-daily_20260102T000000Z",
                                        "kvmsnap-daily_20260103T000000Z"]
    assert select_prunable(snaps, "daily", 5) == []
    assert select_prunable(snaps, "weekly", 1) == []


def test_never_the_newest_good_one():
    # the two newest are invalid (failed runs): the newest *good* one must survive even beyond keep
    snaps = [snap(1), snap(2), snap(3, state="invalid"), snap(4, state="partial")]
    out = [s["name"] for s in select_prunable(snaps, "daily", 1)]
    assert "kvmsnap-daily_20260102T000000Z" not in out
    assert out == ["kvmsnap-daily_20260101T000000Z", "kvmsnap-daily_20260103T000000Z"]


def test_foreign_marker_without_prefix_is_not_pruned():
    snaps = [snap(1, name="manual_copy"), snap(2), snap(3)]
    assert [s["name"] for s in select_prunable(snaps, "daily", 1)] == ["kvmsnap-daily_20260102T000000Z"]


def test_exclude():
    snaps = [snap(1), snap(2), snap(3)]
    out = select_prunable(snaps, "daily", 1, exclude=["kvmsnap-daily_20260101T000000Z"])
    assert [s["name"] for s in out] == ["kvmsnap-daily_20260102T000000Z"]
