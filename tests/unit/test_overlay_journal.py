"""The overlay state in a fence journal: written ahead, recorded after the overlay and every commit attempt, and a
journal with a pending overlay is never pruned."""

from __future__ import annotations

import time

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal
from ansible_collections.kvmsnap.core.plugins.module_utils import _overlay_journal as oj
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_rules import overlay_path

VM1 = {"uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f", "name": "vm1", "prior_state": "running"}
VM2 = {"uuid": "7795eb01-f6a4-8304-79aa-97f2502e193f", "name": "vm2", "prior_state": "running"}
RUN = "backup-20261130T200000Z-0a1b2c3d"


@pytest.fixture
def journal_id(tmp_path):
    sd = _journal.ensure_state_dir(str(tmp_path / "state"))
    _journal.write(sd, _journal.new_journal(RUN, "vm_backup", "qemu:///system", "suspend", 30, [VM1, VM2]))
    return sd, RUN


def plans():
    ovl = [{"target": t, "base": "/ds/vm1-%s.qcow2" % t, "format": "qcow2",
            "overlay": overlay_path("/ds/vm1-%s.qcow2" % t, VM1["uuid"], t, RUN)} for t in ("vda", "vdb")]
    return [{"uuid": VM1["uuid"], "fence": "overlay", "reason": None, "overlays": ovl},
            {"uuid": VM2["uuid"], "fence": "direct", "reason": "transient: ...", "overlays": []}]


def overlays_of(journal, uuid):
    return next(vm for vm in journal["vms"] if vm["uuid"] == uuid).get("overlays")


def test_plans_are_written_ahead_and_pending(journal_id):
    sd, jid = journal_id
    journal = oj.write_plans(sd, jid, plans())
    assert [(o["target"], o["state"]) for o in overlays_of(journal, VM1["uuid"])] == [("vda", "planned"), ("vdb", "planned")]
    vm2 = next(vm for vm in journal["vms"] if vm["uuid"] == VM2["uuid"])
    assert vm2["fence"] == "direct" and vm2["fence_reason"].startswith("transient") and "overlays" not in vm2
    assert [(vm["uuid"], o["target"]) for vm, o in oj.pending(_journal.read(sd, jid))] == [
        (VM1["uuid"], "vda"), (VM1["uuid"], "vdb")]


def test_created_then_committed_leaves_nothing_pending(journal_id):
    sd, jid = journal_id
    oj.write_plans(sd, jid, plans())
    oj.record_overlays(sd, jid, [{"uuid": VM1["uuid"], "created": True, "overlay_at": 100.5}])
    assert {(o["state"], o["overlay_at"]) for o in overlays_of(_journal.read(sd, jid), VM1["uuid"])} == {("created", 100.5)}
    oj.record_commit(sd, jid, VM1["uuid"], {"target": "vda", "error": "job vanished", "commit_ms": 3.0,
                                            "started_at": 200.0})
    oj.record_commit(sd, jid, VM1["uuid"], {"target": "vda", "error": None, "result": "committed", "removed": True,
                                            "commit_ms": 14.0, "started_at": 260.0})
    journal = _journal.read(sd, jid)
    vda = overlays_of(journal, VM1["uuid"])[0]
    assert (vda["state"], vda["attempts"], vda["error"], vda["removed"]) == ("committed", 2, None, True)
    assert vda["commit_started_at"] == 200.0  # the first attempt ended the base's stable window
    assert [o["target"] for _vm, o in oj.pending(journal)] == ["vdb"]
    oj.record_commit(sd, jid, VM1["uuid"], {"target": "vdb", "error": None, "result": "committed", "removed": False,
                                            "remove_error": "cannot delete: Permission denied"})
    # committed but its file is still there: pending (the recovery deletes it)
    assert [o["target"] for _vm, o in oj.pending(_journal.read(sd, jid))] == ["vdb"]


def test_failed_snapshot_is_absent_not_pending(journal_id):
    sd, jid = journal_id
    oj.write_plans(sd, jid, plans())
    oj.record_overlays(sd, jid, [{"uuid": VM1["uuid"], "created": False, "error": "overlay of VM vm1 failed"}])
    journal = _journal.read(sd, jid)
    assert {(o["state"], o["error"]) for o in overlays_of(journal, VM1["uuid"])} == {("absent", "overlay of VM vm1 failed")}
    assert oj.pending(journal) == []


def test_unknown_state_or_disk_refused(journal_id):
    sd, jid = journal_id
    oj.write_plans(sd, jid, plans())
    journal = _journal.read(sd, jid)
    with pytest.raises(_journal.JournalError):
        oj.set_overlay(journal, VM1["uuid"], "vda", state="lost")
    with pytest.raises(_journal.JournalError):
        oj.set_overlay(journal, VM1["uuid"], "vdz", state="committed")
    with pytest.raises(_journal.JournalError):
        oj.set_overlay(journal, "00000000-0000-0000-0000-000000000000", "vda", state="committed")


def test_a_journal_with_a_pending_overlay_is_never_pruned(journal_id):
    sd, jid = journal_id
    oj.write_plans(sd, jid, plans())
    oj.record_overlays(sd, jid, [{"uuid": VM1["uuid"], "created": True}])
    _journal.update(sd, jid, lambda j: _journal.mark_final(j, "released", "module", now=time.time() - 30 * 86400))
    assert _journal.prune_finished(sd) == []
    for target in ("vda", "vdb"):
        oj.record_commit(sd, jid, VM1["uuid"], {"target": target, "error": None, "removed": True})
    assert _journal.prune_finished(sd) == [jid]
