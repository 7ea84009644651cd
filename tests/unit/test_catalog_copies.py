"""The catalogue with the copies on SnapMirror/SnapVault destinations (ontap_snapshot_info copies=true): where each
backup lives, which copy a volume's files come back from when its own snapshot is gone, and the trust of a set
whose members come from copies."""

from __future__ import annotations

from ansible_collections.kvmsnap.core.plugins.filter.roles import catalog, select_snapshot

VOLS = ["c1:svm1:vol1", "c1:svm1:vol2"]


def _snap(name, t, vol, trust="good", svm="svm1", state="valid"):
    meta = {"policy": "daily", "run": "r%d" % t, "host": "h", "state": trust, "consistency": "suspended"}
    return {"name": name, "svm": svm, "volume": vol, "create_time": t, "state": state, "kvmsnap": meta, "trust": trust}


def _copy(name, t, of, location, kind, trust="good"):
    svm, vol = location.split(":")
    return dict(_snap(name, t, vol, trust, svm), copy_of=of, location=location, kind=kind)


def _records(extra_copies=()):
    results = [{"item": "c1",
                "snapshots": [_snap("kvmsnap-daily_2", 2, "vol1"), _snap("kvmsnap-daily_2", 2, "vol2")],
                "copies": [
                    # daily_1: pruned from both volumes; vol1 has a vault and a mirror copy, vol2 only a mirror
                    _copy("kvmsnap-daily_1", 1, "svm1:vol1", "svm_dr:vol1_mirror", "mirror"),
                    _copy("kvmsnap-daily_1", 1, "svm1:vol1", "svm_dr:vol1_vault", "vault"),
                    _copy("kvmsnap-daily_1", 1, "svm1:vol2", "svm_dr:vol2_mirror", "mirror"),
                    # daily_2 also lives in the vault: the volumes' own snapshots win
                    _copy("kvmsnap-daily_2", 2, "svm1:vol1", "svm_dr:vol1_vault", "vault"),
                    # daily_0: only vol1's copy is left
                    _copy("kvmsnap-daily_0", 0, "svm1:vol1", "svm_dr:vol1_vault", "vault"),
                    *extra_copies]}]
    return {r["name"]: r for r in catalog(results, VOLS)}


def test_where_each_backup_lives_and_where_its_files_come_from():
    by = _records()
    one = by["kvmsnap-daily_1"]
    assert one["volumes"] == [] and one["location"] == "copies" and one["complete"] and one["state"] == "good"
    assert one["sources"] == {
        "c1:svm1:vol1": {"location": "svm_dr:vol1_vault", "kind": "vault", "controller": "c1",  # vault first
                         "copy_controller": "c1", "cluster": None},
        "c1:svm1:vol2": {"location": "svm_dr:vol2_mirror", "kind": "mirror", "controller": "c1",
                         "copy_controller": "c1", "cluster": None}}
    assert [(c["volume"], c["location"], c["kind"]) for c in one["copies"]] == [
        ("c1:svm1:vol1", "svm_dr:vol1_mirror", "mirror"), ("c1:svm1:vol1", "svm_dr:vol1_vault", "vault"),
        ("c1:svm1:vol2", "svm_dr:vol2_mirror", "mirror")]
    two = by["kvmsnap-daily_2"]
    assert two["location"] == "primary" and two["sources"] == {} and two["volumes"] == VOLS
    assert [c["location"] for c in two["copies"]] == ["svm_dr:vol1_vault"]
    zero = by["kvmsnap-daily_0"]
    assert zero["missing"] == ["c1:svm1:vol2"] and not zero["complete"] and zero["location"] == "copies"


def test_a_copy_member_counts_for_the_set_trust():
    by = _records([_copy("kvmsnap-daily_5", 5, "svm1:vol1", "svm_dr:vol1_vault", "vault", trust="pending"),
                   _copy("kvmsnap-daily_5", 5, "svm1:vol2", "svm_dr:vol2_mirror", "mirror")])
    assert by["kvmsnap-daily_5"]["state"] == "pending" and by["kvmsnap-daily_5"]["complete"]


def test_selection_by_name_and_latest_over_the_copies():
    records = list(_records().values())
    rec = select_snapshot(records, {"kind": "name", "value": "kvmsnap-daily_1"})
    assert rec["location"] == "copies" and set(rec["sources"]) == set(VOLS)
    assert select_snapshot(records, {"kind": "latest", "value": "latest"})["name"] == "kvmsnap-daily_2"
    found = select_snapshot(records, {"kind": "query", "value": "[?location=='copies' && complete] | [-1]"})
    assert found["name"] == "kvmsnap-daily_1"


def test_without_copies_the_records_are_as_before():
    res = catalog([{"item": "c1", "snapshots": [_snap("kvmsnap-daily_2", 2, "vol1")]}], VOLS)
    assert res[0]["copies"] == [] and res[0]["sources"] == {} and res[0]["location"] == "primary"
    assert res[0]["missing"] == ["c1:svm1:vol2"]


def test_latest_for_a_vm_no_primary_backup_protected_names_the_copies():
    """A VM deleted before the primary's retention window: `latest` cannot tell which copy-only backup holds it,
    so the error names the newest copy-only backup and how to restore it by name."""
    import pytest
    from ansible.errors import AnsibleFilterError

    records = list(_records().values())
    protected = [{"protected": {"kvmsnap-daily_2": []}}]
    with pytest.raises(AnsibleFilterError) as err:
        select_snapshot(records, {"kind": "latest", "value": "latest"}, protected, ["gone1"])
    msg = str(err.value)
    assert "no good backup protected VM gone1" in msg
    assert "live only on SnapMirror/SnapVault copies" in msg
    assert "newest: kvmsnap-daily_1 on svm_dr:vol1_mirror, svm_dr:vol1_vault, svm_dr:vol2_mirror" in msg
    assert "kvmsnap_restore_snapshot: kvmsnap-daily_1" in msg
    # a verify boots from the primary's snapshots only: no way out through a copy is offered
    with pytest.raises(AnsibleFilterError) as err:
        select_snapshot(records, {"kind": "latest", "value": "latest"}, protected, ["gone1"], operation="verify")
    assert "SnapMirror/SnapVault copies" not in str(err.value)
