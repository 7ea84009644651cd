"""Report builder of the roles."""

from __future__ import annotations

import json

from ansible_collections.kvmsnap.core.plugins.module_utils._report import build_report, stats, summary_lines

VOL1 = {"controller": "c1", "svm": "svm1", "volume": "vol_ds1", "snapshot": "kvmsnap-daily_20260101T000000Z",
        "ok": True, "method": "cg_temporary", "pruned": ["kvmsnap-daily_20251201T000000Z"],
        "snapmirror": [{"type": "snapmirror", "destination": "svm2:vol_ds1_dr", "result": "ok"}]}


def _vm(name, ok=True, **kw):
    base = {"host": "kvm1", "name": name, "uuid": "u-" + name, "ok": ok, "consistency": "suspend",
            "pause_ms": 42, "released": True, "volumes": ["c1:svm1:vol_ds1"]}
    base.update(kw)
    return base


def test_ok_report_and_summary():
    rep = build_report("backup", "run1", [_vm("b"), _vm("a")], [VOL1], snapshot=VOL1["snapshot"])
    assert rep["status"] == "ok"
    assert [v["name"] for v in rep["vms"]] == ["a", "b"]
    assert rep["done"] == ["a", "b"] and rep["not_done"] == []
    text = "\n".join(rep["summary"])
    assert "OK (2/2 VMs protected)" in text
    assert "VM a on kvm1: ok, consistency=suspend, pause=42ms, released" in text
    assert "volume c1:svm1:vol_ds1: snapshot kvmsnap-daily_20260101T000000Z" in text
    assert "pruned kvmsnap-daily_20251201T000000Z" in text
    json.dumps(rep)


def test_partial_failure_is_failed_and_names_what_was_not_protected():
    bad_vol = dict(VOL1, volume="vol_ds2", ok=False, snapshot=None, error="HTTP 500", pruned=[], snapmirror=[])
    rep = build_report("backup", "run2", [_vm("a"), _vm("b", ok=False, error="volume vol_ds2 not snapshotted")],
                       [VOL1, bad_vol])
    assert rep["status"] == "failed"
    assert rep["done"] == ["a"] and rep["not_done"] == ["b"]
    assert "c1:svm1:vol_ds2: HTTP 500" in rep["errors"]
    assert any("kvm1/b" in e for e in rep["errors"])
    assert "NOT protected" in "\n".join(summary_lines(rep))


def test_mirror_failure_and_prune_skip_are_warnings():
    vol = dict(VOL1, snapmirror=[{"type": "snapvault", "destination": "svm3:v", "result": "failed",
                                  "error": "transfer busy"}],
               prune_skipped=[{"name": "kvmsnap-daily_x", "reason": "owned by snapmirror"}])
    rep = build_report("backup", "r", [_vm("a")], [vol])
    assert rep["status"] == "warning"
    assert any("transfer busy" in w for w in rep["warnings"])
    assert any("owned by snapmirror" in w for w in rep["warnings"])


def test_not_released_vm_is_an_error_even_if_snapshot_ok():
    rep = build_report("backup", "r", [_vm("a", released=False)], [VOL1])
    assert rep["status"] == "failed"
    assert "NOT RELEASED" in rep["errors"][0]


def test_stats_compact_for_awx():
    rep = build_report("backup", "r", [_vm("a")], [VOL1], snapshot="s")
    st = stats(rep)["kvmsnap_backup"]
    assert st["status"] == "ok"
    assert st["pause_ms"] == {"kvm1/a": 42}
    assert st["volumes"]["c1:svm1:vol_ds1"]["pruned"] == 1
    json.dumps(st)


def test_restore_wording_and_extra():
    rep = build_report("restore", "r", [_vm("a", state_after="running", pause_ms=None, consistency=None,
                                            released=None)], [VOL1], extra={"safety_snapshot": "x"})
    assert rep["safety_snapshot"] == "x"
    assert "1/1 VMs restored" in rep["summary"][0]
    assert "state=running" in rep["summary"][1]


def test_failure_summary_says_each_error_once():
    long_err = ("c1: create snapshot kvmsnap-daily_x on svm1:vol1 failed: HTTP 500 Simulated failure (code 65552); "
                "check the aggregate and run again")
    vms = [{"host": h, "name": n, "ok": False, "released": True, "volumes": ["c1:svm1:vol1"],
            "error": "no snapshot of c1:svm1:vol1 (%s)" % long_err}
           for h, n in (("kvmA", "a1"), ("kvmA", "a2"), ("kvmB", "b1"), ("kvmB", "b2"))]
    vols = [{"controller": "c1", "svm": "svm1", "volume": "vol1", "ok": False, "error": long_err}]
    rep = build_report("backup", "r1", vms, vols, errors=[long_err])
    text = "\n".join(rep["summary"])
    assert text.count(long_err) == 1, text
    assert sum(e.count(long_err) for e in rep["errors"]) == 1, rep["errors"]
    assert "kvmA/a1, kvmA/a2, kvmB/b1, kvmB/b2: no snapshot of c1:svm1:vol1 (see c1:svm1:vol1)" in rep["errors"]
    assert rep["status"] == "failed" and rep["not_done"] == ["a1", "a2", "b1", "b2"]
