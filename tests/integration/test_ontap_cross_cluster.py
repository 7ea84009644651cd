"""A SnapVault relationship held by a second (DR) cluster, seen through the modules: on the primary's controller
ontap_snapmirror does not (cannot) start its transfer and says which cluster holds it; on the DR cluster's
controller the same task updates it; ontap_snapshot_info copies=true names the copy's cluster."""

from __future__ import annotations

import pytest
from helpers.module_fixtures import run_module
from helpers.peer_fixtures import DR, peered_configs
from helpers.sim_fixtures import start_sim

FAST = ["--latency-scale", "0"]


@pytest.fixture
def sites(tmp_path):
    primary_cfg, dr_cfg = peered_configs(tmp_path / "primary", tmp_path / "dr")
    dr = start_sim(tmp_path / "dr", dr_cfg, extra_args=FAST)
    primary = start_sim(tmp_path / "primary", primary_cfg, extra_args=FAST)
    yield primary, dr
    primary.stop()
    dr.stop()


def test_update_and_copies_of_a_vault_on_another_cluster(sites):
    primary, dr = sites
    snap = run_module("ontap_snapshot", {**primary.conn(), "volumes": ["svm1:vol_ds1"], "name": "nightly_x1",
                                         "snapmirror_label": "daily", "state": "present"})
    assert not snap.failed, snap
    upd = {"volumes": ["svm1:vol_ds1"], "state": "updated", "label": "daily"}
    res = run_module("ontap_snapmirror", {**primary.conn(), **upd})
    assert not res.failed and not res["changed"], res
    assert res["volumes_without_relationships"] == [] and res["updated"] == []
    held = res["not_updated"]
    assert [(r["source"], r["destination"], r["held_by"]) for r in held] == \
        [("svm1:vol_ds1", "svm_dr:vol_ds1_vault", DR)]
    assert any(DR in str(w) and "svm_dr:vol_ds1_vault" in str(w) for w in res.get("warnings") or []), res
    status = run_module("ontap_snapmirror_info", {**primary.conn(), "volumes": ["svm1:vol_ds1"]})
    assert [(r["destination"], r["held_by"]) for r in status["relationships"]] == [("svm_dr:vol_ds1_vault", DR)]
    assert status["volumes_without_relationships"] == []
    info = run_module("ontap_snapshot_info", {**primary.conn(), "volumes": ["svm1:vol_ds1"], "copies": True})
    assert not info.failed and info["copies"] == [], info
    assert [(c["location"], c["cluster"]) for c in info["copies_elsewhere"]] == [("svm_dr:vol_ds1_vault", DR)]
    assert "ontap_controllers" in info["copies_elsewhere"][0]["error"]
    # The DR cluster's controller drives it (the vault pulls the labelled snapshot from the primary).
    res = run_module("ontap_snapmirror", {**dr.conn(), **upd})
    assert not res.failed and res["changed"], res
    assert [(r["destination"], r["held_by"]) for r in res["updated"]] == [("svm_dr:vol_ds1_vault", None)]
    vault = dr.admin("GET", "state")
    names = [s["name"] for v in vault["volumes"].values() if v["name"] == "vol_ds1_vault" for s in v["snapshots"]]
    assert names == ["nightly_x1"]


def test_restore_from_a_vault_on_another_cluster(sites):
    primary, dr = sites
    vdir = primary.data / "volumes" / "svm1" / "vol_ds1"
    (vdir / "a.img").write_text("one")
    assert not run_module("ontap_snapshot", {**primary.conn(), "volumes": ["svm1:vol_ds1"], "name": "nightly_x2",
                                             "snapmirror_label": "daily", "state": "present"}).failed
    assert run_module("ontap_snapmirror", {**dr.conn(), "volumes": ["svm1:vol_ds1"], "state": "updated"})["changed"]
    assert not run_module("ontap_snapshot", {**primary.conn(), "volumes": ["svm1:vol_ds1"], "name": "nightly_x2",
                                             "state": "absent"}).failed
    (vdir / "a.img").write_text("two")
    args = {**primary.conn(), "volume": "svm1:vol_ds1", "snapshot": "nightly_x2", "files": ["/a.img"],
            "source": "svm_dr:vol_ds1_vault"}
    # Without the copy's controller: refused before anything is written, naming the cluster and the option.
    res = run_module("ontap_restore", args)
    assert res.failed and DR in res["msg"] and "source_controller" in res["msg"], res
    bad = run_module("ontap_restore", {**args, "source_controller": {"hostname": "https://x"}})
    assert bad.failed and bad["msg"].startswith("source_controller.hostname"), bad
    # The copy is checked on the DR controller; the restore relationship is made on the primary's.
    missing = run_module("ontap_restore", {**args, "files": ["/nope.img"], "source_controller": dr.conn()})
    assert missing.failed and "nope.img" in missing["msg"], missing
    checked = run_module("ontap_restore", {**args, "source_controller": dr.conn()}, check_mode=True)
    assert not checked.failed and checked["changed"] and (vdir / "a.img").read_text() == "two", checked
    done = run_module("ontap_restore", {**args, "source_controller": dr.conn()})
    assert not done.failed and [r["method"] for r in done["restored"]] == ["snapmirror_restore"], done
    assert (vdir / "a.img").read_text() == "one"
    rels = primary.admin("GET", "state")["relationships"]
    assert rels == {}  # the restore relationship was deleted again
