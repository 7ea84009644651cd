"""What a restore from a copy stages: the manifest files of the VMs a datastore's live .kvmsnap/ names, asked of the
copy at the same path in the volume (the junction offset kept), staged below a run's directory, and only the VM
directories the copy really holds go into the local catalog."""

from __future__ import annotations

from ansible_collections.kvmsnap.core.plugins.filter.roles import copy_stage, copy_stage_catalog, copy_stage_files

U1 = "11111111-2222-3333-4444-555555555555"
U2 = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SNAP = {"name": "kvmsnap-daily_1", "sources": {"c1:svm1:vol1": {"location": "svm_dr:vol1_vault", "kind": "vault"}}}
DS = [{"path": "/mnt/ds1", "controller": "c1", "svm": "svm1", "volume": "vol1", "path_in_volume": "/images"},
      {"path": "/mnt/ds2", "controller": "c1", "svm": "svm1", "volume": "vol2"}]
FOUND = [{"item": DS[0], "files": [{"path": "/mnt/ds1/.kvmsnap/" + U1}, {"path": "/mnt/ds1/.kvmsnap/" + U2.upper()},
                                   {"path": "/mnt/ds1/.kvmsnap/not-a-uuid"}]},
         {"item": DS[1], "files": [{"path": "/mnt/ds2/.kvmsnap/" + U1}]}]


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
