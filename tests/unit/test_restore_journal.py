"""The restore journal, its resumption, and what a failed restore overwrote (plugins/plugin_utils/_restore_journal.py).

The playbook-level proofs are in tests/integration/test_restore_exec.py (docs/dev/faults.md#restore-resume,
docs/dev/faults.md#restore-partial); these pin the rules.
"""

from __future__ import annotations

import base64
import json

from ansible_collections.kvmsnap.core.plugins.plugin_utils import _restore_journal as rj

U1 = "11111111-1111-1111-1111-111111111111"
U2 = "22222222-2222-2222-2222-222222222222"


def _plan(state: str = "shutoff", start: str = "never"):
    return {"hosts": {"kvm1": [{"name": "v1", "uuid": U1, "start": start, "current_state": state}],
                      "kvm2": [{"name": "v2", "uuid": U2, "start": "never", "current_state": "shutoff"}]}}


def _slurped(rec, path="/s/restore/r1.json"):
    return {"item": {"path": path}, "content": base64.b64encode(json.dumps(rec).encode()).decode()}


def test_journal_names_the_run_the_snapshots_and_each_vms_state_before():
    rec = rj.journal(_plan("running", "always"), "kvm1", "r1", "snap1", None, "stopping")
    assert rec["run_id"] == "r1" and rec["snapshot"] == "snap1" and rec["safety_snapshot"] is None
    assert rec["vms"] == [{"name": "v1", "uuid": U1, "start": "always", "current_state": "running"}]


def test_a_rerun_adopts_the_run_its_safety_snapshot_and_starts_the_vm_that_was_running():
    old = rj.journal(_plan("running", "always"), "kvm1", "r1", "snap1", "pre1", "define")
    out = rj.resume(_plan("shutoff", "never"), [rj.entry(_slurped(old))], "snap1")
    assert out["errors"] == [] and out["run_id"] == "r1" and out["safety"] == "pre1"
    vm = out["plan"]["hosts"]["kvm1"][0]
    assert vm["start"] == "always" and vm["current_state"] == "running"
    assert out["plan"]["hosts"]["kvm2"][0]["start"] == "never"


def test_a_rerun_with_another_snapshot_is_refused_naming_the_journal():
    old = rj.journal(_plan(), "kvm1", "r1", "snap1", "pre1", "disks")
    out = rj.resume(_plan(), [rj.entry(_slurped(old))], "snap2")
    assert out["run_id"] is None and "kvmsnap_restore_snapshot=snap1" in out["errors"][0]
    assert "kvm1:/s/restore/r1.json" in out["errors"][0]


def test_unrelated_done_or_corrupt_journals_are_ignored():
    other = {"run_id": "r9", "host": "kvm1", "snapshot": "s", "stage": "disks",
             "vms": [{"uuid": "33333333-3333-3333-3333-333333333333"}]}
    done = dict(rj.journal(_plan(), "kvm1", "r2", "snap1", None, "done"))
    corrupt = {"item": {"path": "/x.json"}, "content": base64.b64encode(b"{not json").decode()}
    out = rj.resume(_plan(), [rj.entry(_slurped(other)), rj.entry(_slurped(done)), rj.entry(corrupt)], "snap1")
    assert out["run_id"] is None and out["errors"] == [] and out["plan"] == _plan()


def test_overwritten_counts_the_files_restored_before_a_failure_and_marks_volume_restores():
    disks = {"results": [
        {"vol": {"key": "c1:svm1:v1", "controller": "c1", "svm": "svm1", "volume": "v1"}, "failed": True,
         "restored": [{"type": "file", "path": "/a.img", "method": "rest_restore_to"}],
         "failed_items": [{"type": "file", "path": "/b.img", "error": "x"}]},
        {"vol": {"key": "c1:svm1:v2"}, "restored": [{"type": "volume", "path": "/", "method": "volume_snaprestore"}]},
        {"vol": {"key": "c1:svm1:v3"}, "restored": []}]}
    out = rj.overwritten(disks)
    expected = [("c1:svm1:v1", ["/a.img"], False), ("c1:svm1:v2", [], True)]
    assert [(o["key"], o["files"], o["whole"]) for o in out] == expected


def test_stopped_and_rolled_back_skip_failed_and_skipped_items():
    stop = {"results": [{"vm": {"name": "v1"}, "aside": {"xml": "/a"}},
                        {"vm": {"name": "v2"}, "failed": True, "aside": {"xml": "/b"}},
                        {"vm": {"name": "v3"}}]}
    assert [r["vm"]["name"] for r in rj.stopped(stop)] == ["v1"]
    back = {"results": [{"vol": {"key": "k1"}}, {"vol": {"key": "k2"}, "failed": True},
                        {"vol": {"key": "k3"}, "skipped": True}]}
    assert rj.rolled_back(back) == ["k1"]
