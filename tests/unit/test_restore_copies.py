"""What a restore from a copy stages: the manifest files of the VMs the copy's .kvmsnap/ lists (names from storage,
checked: UUID directories only, bounded), asked of the copy at the same path in the volume (the junction offset
kept), staged below a run's directory, and only the VM directories the copy really holds go into the local
catalog."""

from __future__ import annotations

from ansible_collections.kvmsnap.core.plugins.filter.roles import (
    copy_list,
    copy_listed,
    copy_stage,
    copy_stage_catalog,
    copy_stage_files,
)
from ansible_collections.kvmsnap.core.plugins.plugin_utils._restore_copies import MAX_VMS

U1 = "11111111-2222-3333-4444-555555555555"
U2 = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SNAP = {"name": "kvmsnap-daily_1", "sources": {"c1:svm1:vol1": {"location": "svm_dr:vol1_vault", "kind": "vault"}}}
DS = [{"path": "/mnt/ds1", "controller": "c1", "svm": "svm1", "volume": "vol1", "path_in_volume": "/images"},
      {"path": "/mnt/ds2", "controller": "c1", "svm": "svm1", "volume": "vol2"}]
LISTED = copy_list(DS, SNAP)


def _listing(*entries, present=True, kind="directory", truncated=False):
    return {"files": [{"svm": "svm_dr", "volume": "vol1_vault", "path": LISTED[0]["ask"].split(":", 1)[1],
                       "present": present, "type": kind if present else None,
                       "entries": [{"name": n, "type": t} for n, t in entries] if present and kind == "directory" else None,
                       "entries_truncated": truncated}]}


FOUND = [dict(_listing((U1, "directory"), (U2.upper(), "directory"), ("not-a-uuid", "directory")), entry=LISTED[0])]


def test_the_copy_of_each_datastore_from_a_copy_is_listed_at_its_offset():
    assert LISTED == [{"controller": "c1", "key": "c1:svm1:vol1", "ds_path": "/mnt/ds1", "source": "svm_dr:vol1_vault",
                       "ask": "svm_dr:/vol/vol1_vault/images/.kvmsnap", "copy_controller": "c1"}]  # vol2 has its own


def test_names_from_the_copy_are_checked():
    hostile = ["..", "../etc", "a/b", "%s/../x" % U1, "", None, U1 + "x", "x" * 300]
    res = copy_listed([dict(_listing(*[(n, "directory") for n in hostile], (U2, "symlink"), (U1, "file"),
                                     ("11111111-2222-3333-4444-666666666666", "directory")), entry=LISTED[0])])[0]
    assert res["error"] is None and res["uuids"] == ["11111111-2222-3333-4444-666666666666"]
    assert len(res["refused"]) == len(hostile) + 2
    assert "%s: a symlink, not a directory" % U2 in res["refused"]
    assert "'../etc': not a VM directory name (a UUID: hex digits and '-')" in res["refused"]


def test_a_listing_too_long_or_unusable_is_refused_whole():
    many = ["%08x-0000-0000-0000-000000000000" % i for i in range(MAX_VMS + 1)]
    res = copy_listed([dict(_listing(*[(n, "directory") for n in many]), entry=LISTED[0])])[0]
    assert res["uuids"] == [] and "more than %d VM directories" % MAX_VMS in res["error"]
    res = copy_listed([dict(_listing((U1, "directory"), truncated=True), entry=LISTED[0])])[0]
    assert res["uuids"] == [] and res["error"]
    res = copy_listed([dict(_listing(kind="file"), entry=LISTED[0])])[0]
    assert "not a directory ONTAP lists" in res["error"]
    res = copy_listed([{"failed": True, "msg": "403 forbidden", "entry": LISTED[0]}])[0]
    assert res["error"] == "svm_dr:vol1_vault: 403 forbidden"
    # no .kvmsnap/ in the copy: nothing to stage, no error
    assert copy_listed([dict(_listing(present=False), entry=LISTED[0])])[0] == {
        "key": "c1:svm1:vol1", "source": "svm_dr:vol1_vault", "uuids": [], "refused": [], "error": None}
    assert copy_stage(DS, [dict(_listing(present=False), entry=LISTED[0])], SNAP, "run1", "/s") == []


def test_stage_plan_only_for_volumes_from_copies_with_the_offset_kept():
    plan = copy_stage(DS, FOUND, SNAP, "run1", "/var/lib/kvmsnap")
    assert len(plan) == 1  # vol2 still has its own snapshot
    entry = plan[0]
    assert (entry["key"], entry["volume"], entry["source"]) == ("c1:svm1:vol1", "svm1:vol1", "svm_dr:vol1_vault")
    assert entry["destination_dir"] == "/images/.kvmsnap-staging/run1"
    assert entry["host_dir"] == "/mnt/ds1/.kvmsnap-staging/run1"
    assert entry["files"][:3] == ["/images/.kvmsnap/%s/%s" % (U1, f) for f in ("manifest.json", "domain.xml", "nvram")]
    assert entry["ask"][0] == "svm_dr:/vol/vol1_vault/images/.kvmsnap/%s/manifest.json" % U1
    assert len(entry["files"]) == 6 and U2 in entry["files"][3]  # UUIDs lower-cased, not-a-uuid left out
    assert copy_listed(FOUND)[0]["refused"] == ["'not-a-uuid': not a VM directory name (a UUID: hex digits and '-')"]
    assert entry["catalog"][0] == {"vm_dir": "/images/.kvmsnap/" + U1,
                                   "src": "/mnt/ds1/.kvmsnap-staging/run1/images/.kvmsnap/%s/" % U1,
                                   "dest": "/var/lib/kvmsnap/catalog/kvmsnap-daily_1/%s/" % U1}


def test_only_what_the_copy_holds_is_staged():
    entry = copy_stage(DS, FOUND, SNAP, "run1", "/s")[0]
    present = ["/vol/vol1_vault/images/.kvmsnap/%s/manifest.json" % U1, "/vol/vol1_vault/images/.kvmsnap/%s/domain.xml" % U1,
               "/vol/vol1_vault/images/.kvmsnap/%s/manifest.json" % U2]  # U2 without its domain.xml
    answer = {"files": [{"svm": "svm_dr", "volume": "vol1_vault", "path": p, "present": True} for p in present]
              + [{"svm": "svm_dr", "volume": "vol1_vault", "path": "/vol/vol1_vault/images/.kvmsnap/%s/nvram" % U1,
                  "present": False}]}
    assert copy_stage_files(entry, answer) == ["/images/.kvmsnap/%s/manifest.json" % U1,
                                               "/images/.kvmsnap/%s/domain.xml" % U1]
    assert [c["vm_dir"] for c in copy_stage_catalog((entry, answer))] == ["/images/.kvmsnap/" + U1]
    assert copy_stage_files(entry, {"files": []}) == []
