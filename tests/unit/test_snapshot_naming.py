"""Snapshot names and the kvmsnap metadata marker (pure logic)."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import (
    SnapshotNameError,
    build_comment,
    default_name,
    existing_set,
    has_marker,
    is_good,
    is_orphaned,
    is_ours,
    parse_comment,
    parse_name,
    restate_comment,
    trust_state,
    validate_backup_policy,
    validate_policy,
    validate_snapshot_name,
)


@pytest.mark.parametrize("name", ["a", "_x", "kvmsnap-daily_20260101T000000Z", "A.b-c_d", "x" * 255])
def test_valid_names(name):
    assert validate_snapshot_name(name) == name


@pytest.mark.parametrize("name,needle", [
    ("", "required"),
    (None, "required"),
    ("x" * 256, "256 characters"),
    ("-lead", "first character"),
    ("1abc", "first character"),
    ("has space", "' '"),
    ("a/b", "'/'"),
    ("a*b", "'*'"),
    ("a@b", "'@'"),
    ("caf\u00e9", "'\u00e9'"),
    ("a\nb", "'\\n'"),
    ("hourly.0", "reserved prefix"),
    ("Daily.1", "reserved prefix"),
    ("snapmirror.abc", "reserved prefix"),
    ("vserverdr.1", "reserved prefix"),
    ("smas_x", "reserved prefix"),
    ("sm_created_1", "reserved prefix"),
    ("ontap_ransom_x", "reserved prefix"),
    (".hidden", "reserved prefix"),
])
def test_invalid_names_name_the_field_and_form(name, needle):
    with pytest.raises(SnapshotNameError) as err:
        validate_snapshot_name(name, "name")
    text = str(err.value)
    assert text.startswith("name:")
    assert needle in text
    assert "[A-Za-z0-9_.-]" in text


def test_default_name_format_and_parse():
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    name = default_name("daily", when)
    assert name == "kvmsnap-daily_20260102T030405Z"
    assert parse_name(name) == {"prefix": "kvmsnap", "policy": "daily", "time": int(when.timestamp())}
    assert parse_name("other") is None
    assert default_name("weekly", when, prefix="site1").startswith("site1-weekly_")


def test_default_name_converts_to_utc():
    tz = datetime.timezone(datetime.timedelta(hours=2))
    when = datetime.datetime(2026, 1, 2, 5, 0, 0, tzinfo=tz)
    assert default_name("daily", when).endswith("_20260102T030000Z")


@pytest.mark.parametrize("policy", ["", "a b", "x" * 33, None, "dai-ly", 7])
def test_bad_policy(policy):
    with pytest.raises(SnapshotNameError):
        validate_policy(policy)


def test_comment_roundtrip():
    text = build_comment("daily", "run42", "kvm1.example.com", "nightly", until=1700000000)
    assert text == "kvmsnap:v1 policy=daily run=run42 host=kvm1.example.com state=pending until=1700000000 | nightly"
    assert parse_comment(text) == {"policy": "daily", "run": "run42", "host": "kvm1.example.com", "state": "pending",
                                   "consistency": None, "until": 1700000000, "verified": None, "extra": "nightly"}
    assert parse_comment(build_comment("weekly", "r"))["state"] == "pending"


def test_trust_states():
    pending = build_comment("daily", "r1", "kvm1", until=100)
    good = restate_comment(pending, "good", "suspended")
    assert good == "kvmsnap:v1 policy=daily run=r1 host=kvm1 state=good consistency=suspended"
    assert is_good({"comment": good}) and not is_good({"comment": good, "state": "invalid"})
    assert not is_good({"comment": pending})
    assert trust_state({"comment": restate_comment(pending, "late", "crash")}) == "late"
    # written before trust states existed: never good
    assert trust_state({"comment": "kvmsnap:v1 policy=daily run=r"}) is None
    assert not is_good({"comment": "kvmsnap:v1 policy=daily run=r state=bogus"})
    assert is_orphaned({"comment": pending}, now=101) and not is_orphaned({"comment": pending}, now=99)
    assert not is_orphaned({"comment": good}, now=10 ** 10)
    with pytest.raises(SnapshotNameError, match="state"):
        build_comment("daily", "r", state="fine")
    with pytest.raises(SnapshotNameError, match="consistency"):
        build_comment("daily", "r", state="good", consistency="perfect")
    with pytest.raises(SnapshotNameError, match="no kvmsnap metadata"):
        restate_comment("manual snapshot", "good")


def test_reserved_backup_policy():
    assert validate_backup_policy("daily") == "daily"
    with pytest.raises(SnapshotNameError, match="reserved"):
        validate_backup_policy("prerestore")


@pytest.mark.parametrize("comment", [None, "", "hello", "kvmsnap:v2 policy=x run=y", "kvmsnap:v1 run=y",
                                     "xkvmsnap:v1 policy=a run=b", "kvmsnap:v1 policy=a"])
def test_foreign_comments(comment):
    assert parse_comment(comment) is None


def test_comment_rejects_spaces_and_length():
    with pytest.raises(SnapshotNameError, match="run"):
        build_comment("daily", "run 1")
    with pytest.raises(SnapshotNameError, match="host"):
        build_comment("daily", "r", "kvm 1")
    with pytest.raises(SnapshotNameError, match="at most 255"):
        build_comment("daily", "r", None, "x" * 300)


def test_is_ours_needs_prefix_and_marker():
    comment = build_comment("daily", "r1")
    assert is_ours({"name": "kvmsnap-daily_20260101T000000Z", "comment": comment})
    assert not is_ours({"name": "kvmsnap-daily_20260101T000000Z", "comment": "manual"})
    assert not is_ours({"name": "hourly.0", "comment": comment})
    assert not is_ours({"name": "kvmsnapfoo", "comment": comment})
    assert has_marker({"name": "custom", "comment": comment})
    assert is_ours({"name": "site-x", "comment": comment}, prefix="site")


def _snap(run=None, state="good", ontap_state="valid"):
    comment = build_comment("daily", run, state=state) if run else "made by hand"
    return {"name": "kvmsnap-daily_x", "comment": comment, "state": ontap_state}


@pytest.mark.parametrize("found, run, accept, verdict, kind", [
    ({"s:a": None, "s:b": None}, "r1", "good", "free", None),
    ({"s:a": _snap("r1", "pending"), "s:b": _snap("r1", "pending")}, "r1", "same_run", "done", None),
    ({"s:a": _snap("r1", "pending"), "s:b": _snap("r1", "pending")}, "r1", "good", "done", None),
    ({"s:a": _snap("r0", "late"), "s:b": _snap("r0", "late")}, None, "any_run", "done", None),
    ({"s:a": _snap("r0"), "s:b": _snap("r0")}, "r1", "good", "done", None),
    ({"s:a": _snap("r0"), "s:b": _snap("r0")}, None, "good", "done", None),
    ({"s:a": _snap("r0"), "s:b": _snap("r0")}, "r1", "same_run", "clash", "other_run"),
    ({"s:a": _snap("r0", "pending"), "s:b": _snap("r0", "pending")}, "r1", "good", "clash", "not_good"),
    ({"s:a": _snap("r0"), "s:b": _snap("r0", ontap_state="invalid")}, None, "good", "clash", "not_good"),
    ({"s:a": _snap("r1"), "s:b": None}, "r1", "any_run", "clash", "partial"),
    ({"s:a": _snap(), "s:b": None}, "r1", "good", "clash", "foreign"),
])
def test_existing_set_decides_what_an_existing_name_means(found, run, accept, verdict, kind):
    """F11 (docs/dev/faults.md#f11): one function decides for ontap_snapshot, vm_backup and the backup role."""
    out = existing_set("kvmsnap-daily_x", found, run, accept=accept)
    assert (out["verdict"], out["kind"]) == (verdict, kind), out
    assert bool(out["reason"]) == (verdict == "clash")


def test_existing_set_reasons_name_the_volumes_and_runs():
    out = existing_set("n", {"s:a": _snap("r0", "pending"), "s:b": _snap("r0", "late")}, "r1")
    assert out["reason"] == ("snapshot n already exists on s:a, s:b, made by run r0, but is not a confirmed backup "
                             "(state late, pending)")
    out = existing_set("n", {"s:a": _snap("r0"), "s:b": None}, "r1")
    assert out["reason"] == "snapshot n already exists on s:a but not on s:b, so it is not one consistent set"
    with pytest.raises(ValueError):
        existing_set("n", {}, accept="maybe")
