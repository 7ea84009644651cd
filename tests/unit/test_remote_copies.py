"""Copies and relationships another (peered) cluster holds: which inventory controller to ask, the holder's
answer merged into the restore catalogue (copy_controller, cluster) and into the backup report, and the notes
for a copy no inventory controller holds."""

from __future__ import annotations

from ansible_collections.kvmsnap.core.plugins.filter.roles import (
    backup_volumes,
    catalog,
    mirror_update_asks,
    mirror_update_results,
    remote_copies,
    remote_copy_asks,
)
from ansible_collections.kvmsnap.core.plugins.plugin_utils._restore_copies import list_plan

META = {"policy": "daily", "run": "r1", "host": "h", "state": "good", "consistency": "suspended"}


def _snap(name, svm, vol):
    return {"name": name, "svm": svm, "volume": vol, "create_time": 1, "state": "valid", "kvmsnap": META,
            "trust": "good"}


PRIMARY = [{"item": "c1", "snapshots": [], "copies": [], "copies_elsewhere": [
    {"copy_of": "svm1:vol1", "location": "svm_dr:vol1_vault", "kind": "vault", "cluster": "site-b", "error": "x"},
    {"copy_of": "svm1:vol1", "location": "svm_far:vol1_m", "kind": "mirror", "cluster": "site-c", "error": "x"},
    # a destination the controller could not list for another reason (no cluster): not asked elsewhere
    {"copy_of": "svm1:vol1", "location": "svm_x:gone", "kind": "mirror", "error": "not found"}]},
    {"item": "c3", "failed": True, "msg": "down"}]


def test_each_other_inventory_controller_is_asked_for_each_remote_copy():
    asks = remote_copy_asks(PRIMARY, ["c1", "c2", "c3"])
    assert asks == [{"controller": "c2", "location": "svm_dr:vol1_vault"},
                    {"controller": "c2", "location": "svm_far:vol1_m"},
                    {"controller": "c3", "location": "svm_dr:vol1_vault"},
                    {"controller": "c3", "location": "svm_far:vol1_m"}]
    assert remote_copy_asks([{"item": "c1", "copies_elsewhere": []}], ["c1", "c2"]) == []


def test_the_holder_answer_goes_into_the_catalogue_and_the_rest_is_named():
    answers = [
        {"entry": {"controller": "c2", "location": "svm_dr:vol1_vault"},
         "snapshots": [_snap("kvmsnap-daily_1", "svm_dr", "vol1_vault"),
                       _snap("stray", "svm_dr", "other")]},  # not the volume asked for: left out
        {"entry": {"controller": "c2", "location": "svm_far:vol1_m"}, "failed": True, "msg": "not found"},
        {"entry": {"controller": "c3", "location": "svm_dr:vol1_vault"}, "failed": True, "msg": "not found"},
        {"entry": {"controller": "c3", "location": "svm_far:vol1_m"}, "failed": True, "msg": "not found"}]
    got = remote_copies(PRIMARY, answers)
    assert got["held"] == [{"location": "svm_dr:vol1_vault", "cluster": "site-b", "copy_controller": "c2"}]
    assert len(got["notes"]) == 1
    note = got["notes"][0]
    assert "svm_far:vol1_m" in note and "site-c" in note and "SVM svm_far" in note and "ontap_controllers" in note
    [item] = got["results"]
    assert item["controller"] == "c1" and [c["name"] for c in item["copies"]] == ["kvmsnap-daily_1"]
    recs = {r["name"]: r for r in catalog(PRIMARY[:1] + got["results"], ["c1:svm1:vol1"])}
    rec = recs["kvmsnap-daily_1"]
    assert rec["location"] == "copies" and rec["complete"] and rec["state"] == "good"
    assert rec["sources"] == {"c1:svm1:vol1": {"location": "svm_dr:vol1_vault", "kind": "vault", "controller": "c1",
                                               "copy_controller": "c2", "cluster": "site-b"}}
    # the staging of the manifests asks the controller that holds the copy
    ds = [{"path": "/mnt/ds1", "controller": "c1", "svm": "svm1", "volume": "vol1"}]
    assert list_plan(ds, rec)[0]["copy_controller"] == "c2"


HELD = {"uuid": "u1", "source": "svm1:vol1", "destination": "svm_dr:vol1_vault", "type": "vault", "held_by": "site-b",
        "reason": "held by cluster site-b"}
MIRRORS = [{"item": "c1", "updated": [], "relationships": [HELD], "not_updated": [HELD]}]


def test_backup_updates_a_relationship_on_the_controller_of_its_cluster():
    asks = mirror_update_asks(MIRRORS, ["c1", "c2"])
    assert asks == [{"controller": "c2", "primary": "c1", "volumes": ["svm1:vol1"]}]
    done = dict(HELD, held_by=None, reason=None, state="snapmirrored", healthy=True)
    answers = [{"entry": asks[0], "updated": [done], "relationships": [done], "not_updated": []}]
    merged = mirror_update_results(MIRRORS, answers)
    assert merged == [{"item": "c1", "relationships": [done], "updated": [done], "not_updated": []}]
    vols = [{"controller": "c1", "svm": "svm1", "volume": "vol1", "ok": True}]
    [entry] = backup_volumes(vols, MIRRORS + merged, [], "snap1")
    assert [(m["destination"], m["result"]) for m in entry["snapmirror"]] == [("svm_dr:vol1_vault", "ok")]
    # no controller holds it: the report keeps the primary's "skipped" with the reason (what to add)
    [entry] = backup_volumes(vols, MIRRORS + mirror_update_results(MIRRORS, []), [], "snap1")
    assert [(m["result"], m["error"]) for m in entry["snapmirror"]] == [("skipped", "held by cluster site-b")]
    # the holder failed: the report names the failure and the controller
    failed = mirror_update_results(MIRRORS, [{"entry": asks[0], "failed": True, "msg": "transfer failed"}])
    assert failed == [{"item": "c1", "failed": True, "msg": "transfer failed (controller c2)"}]
