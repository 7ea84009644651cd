"""Manifests read back from a snapshot: signatures, and checks against the host (never the manifest itself)."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _manifest as mf
from ansible_collections.kvmsnap.core.plugins.module_utils import _manifest_sig as sig
from ansible_collections.kvmsnap.core.plugins.plugin_utils._plan import restore_plan

UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
KEY = "k" * 32
HOST = {"emulators": {"x86_64": "/usr/bin/qemu-system-x86_64"}, "host_arch": "x86_64"}


def domain_xml(src):
    return ("<domain type='kvm'><name>web1</name><uuid>%s</uuid><os><type arch='x86_64'>hvm</type></os><devices>"
            "<disk type='file' device='disk'><source file='%s'/><target dev='vda'/></disk></devices></domain>"
            % (UUID, src))


@pytest.fixture
def ds(tmp_path):
    d = tmp_path / "ds1"
    d.mkdir()
    return str(d)


def saved(tmp_path, ds, key=KEY, src=None, edit=None):
    """Write a manifest as the backup does (signed with KEY), optionally EDIT it afterwards; return the loaded one."""
    src = src or os.path.join(ds, "web1.img")
    vm = {"name": "web1", "uuid": UUID, "state": "running",
          "disks": [{"target": "vda", "source": src, "controller": "c1", "svm": "svm1", "volume": "vol_ds1",
                     "datastore": ds, "path": "/" + os.path.relpath(src, ds)}]}
    xml = domain_xml(src)
    man = mf.build(vm, xml, None, {"host": "kvm1", "run_id": "r1", "snapshot": "s1"})
    root = str(tmp_path / "root")
    mf.write(man, xml, None, [root], key=key)
    vm_dir = os.path.join(root, UUID)
    if edit:
        path = os.path.join(vm_dir, "manifest.json")
        doc = json.loads(open(path).read())
        edit(doc)
        open(path, "w").write(json.dumps(doc))
    return mf.load(vm_dir)


# ---- signatures ---------------------------------------------------------------------------------------------------


def test_signed_manifest_verifies_after_load(tmp_path, ds):
    man = saved(tmp_path, ds)
    assert man["signature"]["alg"] == "hmac-sha256" and man["signature"]["key_id"] == sig.key_id(KEY)
    assert mf.check_signature(man, [KEY], []) is None


def test_edited_manifest_no_longer_verifies(tmp_path, ds):
    man = saved(tmp_path, ds, edit=lambda d: d.update(datastores=["/"]))
    with pytest.raises(mf.ManifestError, match="VM web1: signature: the signature does not verify"):
        mf.check_signature(man, [KEY], [])


def test_unsigned_refused_unless_named(tmp_path, ds):
    man = saved(tmp_path, ds, key=None)
    with pytest.raises(mf.ManifestError, match="VM web1: signature: the manifest is not signed; refused"):
        mf.check_signature(man, [KEY], [])
    with pytest.raises(mf.ManifestError):
        mf.check_signature(man, [KEY], ["db1"])
    assert "kvmsnap_restore_unsigned_ok" in mf.check_signature(man, [KEY], ["web1"])
    assert mf.check_signature(man, [KEY], [UUID]) is not None


def test_old_keys_verify_wrong_keys_do_not(tmp_path, ds):
    man = saved(tmp_path, ds)
    new = "n" * 32
    assert mf.check_signature(man, [new, KEY], []) is None
    with pytest.raises(mf.ManifestError, match="signed with key id %s" % sig.key_id(KEY)):
        mf.check_signature(man, [new], [])
    with pytest.raises(mf.ManifestError, match="no manifest key is configured"):
        mf.check_signature(man, [], [])


def test_signature_covers_the_domain_xml(tmp_path, ds):
    man = saved(tmp_path, ds)
    xml = man["domain_xml_text"].replace("</devices>", "<serial type='file'><source path='/etc/x'/></serial></devices>")
    open(os.path.join(man["dir"], "domain.xml"), "w").write(xml)
    path = os.path.join(man["dir"], "manifest.json")
    doc = json.loads(open(path).read())
    doc["domain_xml"]["sha256"] = mf.sha256(xml.encode())  # the digest fixed up, as an attacker would
    open(path, "w").write(json.dumps(doc))
    with pytest.raises(mf.ManifestError, match="does not verify"):
        mf.check_signature(mf.load(man["dir"]), [KEY], [])


def test_short_key_is_refused():
    with pytest.raises(sig.ManifestKeyError):
        sig.sign({"a": 1}, "short")


# ---- checks against the host ------------------------------------------------------------------------------------


def no_users(paths, uuid):
    return {}


def test_vet_accepts_a_manifest_of_this_host(tmp_path, ds):
    man = mf.vet(saved(tmp_path, ds), [ds], HOST, no_users)
    assert man["allowed_paths"] == [ds] and man["policy_rewritten"] == []


def test_datastore_not_of_this_host_refused(tmp_path, ds):
    man = saved(tmp_path, ds)
    with pytest.raises(mf.ManifestError, match=r"VM web1: disks\[0\].datastore '.*' is not one of this host's"):
        mf.vet(man, [str(tmp_path / "other")], HOST, no_users)


def test_manifest_datastores_list_never_widens(tmp_path, ds):
    man = saved(tmp_path, ds)
    man["datastores"] = ["/"]
    with pytest.raises(mf.ManifestError, match=r"VM web1: datastores \['/'\] differ"):
        mf.vet(man, [ds, "/"], HOST, no_users)


def test_disk_path_must_be_its_source_inside_its_datastore(tmp_path, ds):
    man = saved(tmp_path, ds)
    man["disks"][0]["path"] = "/other.img"
    with pytest.raises(mf.ManifestError, match=r"disks\[0\].path '/other.img' inside datastore"):
        mf.vet(man, [ds], HOST, no_users)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, os.path.join(ds, "link"))
    man = saved(tmp_path, ds, src=os.path.join(ds, "link", "x.img"))
    with pytest.raises(mf.ManifestError, match=r"disks\[0\].source .* is outside its datastore"):
        mf.vet(man, [ds], HOST, no_users)


def test_manifest_disks_must_equal_the_xml_disks(tmp_path, ds):
    def add_disk(d):
        d["disks"].append(dict(d["disks"][0], source=os.path.join(ds, "other.img"), path="/other.img"))
    with pytest.raises(mf.ManifestError, match=r"manifest disks\[1\].source .*other.img is not a disk of its domain"):
        saved(tmp_path, ds, edit=add_disk)


def test_disk_of_another_vm_refused(tmp_path, ds):
    man = saved(tmp_path, ds)
    src = man["disks"][0]["source"]
    with pytest.raises(mf.ManifestError, match=r"disks\[0\].source .* is used by VM db1 on this host"):
        mf.vet(man, [ds], HOST, lambda paths, uuid: {src: ["db1"]} if src in paths else {})


def test_xml_policy_refusal_names_the_element(tmp_path, ds):
    man = saved(tmp_path, ds)
    man["domain_xml_text"] = man["domain_xml_text"].replace("</devices>", "<hostdev/></devices>")
    with pytest.raises(mf.ManifestError, match="VM web1: domain.xml refused by the domain allow-list .docs/security.md.: <hostdev"):
        mf.vet(man, [ds], HOST, no_users)


def test_lun_source_must_be_a_device(tmp_path, ds):
    man = saved(tmp_path, ds)
    man["disks"][0].update(lun="/vol/v/lun0", source="/etc/shadow")
    with pytest.raises(mf.ManifestError, match="is not a device under /dev"):
        mf.vet(man, [ds], HOST, no_users)


# ---- the plan uses the host's datastores -------------------------------------------------------------------------


def test_plan_allowed_paths_and_volume_come_from_the_host(tmp_path, ds):
    man = mf.vet(saved(tmp_path, ds), [ds], HOST, no_users)
    man["datastores"] = ["/"]  # whatever the manifest says of itself is not used
    host_ds = [{"path": ds, "controller": "c1", "svm": "svm1", "volume": "vol_ds1"}]
    snap = {"name": "s1", "volumes": ["c1:svm1:vol_ds1"]}
    plan = restore_plan({"kvm1": {"manifests": [man], "datastores": host_ds}}, "all", snap)
    assert plan["errors"] == [] and plan["hosts"]["kvm1"][0]["allowed_paths"] == [ds]
    other = [dict(host_ds[0], volume="vol_other")]
    plan = restore_plan({"kvm1": {"manifests": [man], "datastores": other}}, "all", snap)
    assert plan["hosts"]["kvm1"] == []
    assert any("VM web1: disks[0] names volume c1:svm1:vol_ds1, but kvm1 maps datastore" in e for e in plan["errors"])


def test_a_refused_manifest_is_named_once_with_its_reason():
    bad = {"uuid": UUID, "error": "VM web1: signature: the manifest is not signed; refused (...)"}
    plan = restore_plan({"kvm1": {"manifests": [], "invalid": [bad], "datastores": []}}, ["web1"],
                        {"name": "s1", "volumes": []})
    assert plan["errors"] == ["kvm1: VM web1: signature: the manifest is not signed; refused (...)"]


def test_two_manifests_claiming_one_disk_are_refused(tmp_path, ds):
    a = mf.vet(saved(tmp_path / "a", ds), [ds], HOST, no_users)
    b = json.loads(json.dumps(a))
    b["vm"] = {"name": "db1", "uuid": "00000000-0000-4000-8000-000000000001", "state": "running"}
    host_ds = [{"path": ds, "controller": "c1", "svm": "svm1", "volume": "vol_ds1"}]
    plan = restore_plan({"kvm1": {"manifests": [a, b], "datastores": host_ds}}, "all",
                        {"name": "s1", "volumes": ["c1:svm1:vol_ds1"]})
    assert plan["hosts"]["kvm1"] == [] and plan["volumes"] == []
    assert plan["errors"] == ["VMs db1, web1: their manifests name the same disk %s/web1.img; refused" % ds]
