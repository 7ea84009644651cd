"""A saved domain XML gets one answer: the restore (vm_restore) and the manifest reader (backup_manifest, the
restore pre-flight) apply the same check of its form and identity (_domain_xml.check_saved)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _domain_restore as dr
from ansible_collections.kvmsnap.core.plugins.module_utils import _domain_xml as dx
from ansible_collections.kvmsnap.core.plugins.module_utils import _manifest as mf

UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
MAX = 1024 * 1024  # the size limit of a saved domain XML


def domain_xml(src, head="", description=""):
    return ("%s<domain type='kvm'><name>web1</name><uuid>%s</uuid><description>%s</description>"
            "<os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'><source file='%s'/>"
            "<target dev='vda'/></disk></devices></domain>" % (head, UUID, description, src))


def manifest_dir(tmp_path, ds, xml):
    """A manifest directory as a snapshot holds it (hashes right; nothing else to object to)."""
    src = os.path.join(ds, "web1.img")
    vm_dir = tmp_path / "root" / UUID
    vm_dir.mkdir(parents=True)
    (vm_dir / "domain.xml").write_bytes(xml.encode("utf-8"))
    doc = {"kvmsnap_manifest": mf.FORMAT, "vm": {"name": "web1", "uuid": UUID, "state": "running"},
           "domain_xml": {"file": "domain.xml", "sha256": hashlib.sha256(xml.encode("utf-8")).hexdigest()},
           "nvram": None, "datastores": [ds],
           "disks": [{"target": "vda", "source": src, "datastore": ds, "path": "/web1.img", "svm": "svm1",
                      "volume": "vol_ds1", "controller": "c1"}]}
    (vm_dir / "manifest.json").write_text(json.dumps(doc))
    return str(vm_dir)


@pytest.fixture
def ds(tmp_path):
    d = tmp_path / "ds1"
    d.mkdir()
    return str(d)


@pytest.mark.parametrize("case, reason", [
    # the restore refused an XML above its size limit; the manifest reader (and the policy) took it
    ("oversized", "larger than %d bytes" % MAX),
    # the manifest reader parsed a DTD with its entities (the policy refused it only later, in vet)
    ("dtd", "DTD or entity declaration"),
    # a UUID written without dashes is the same VM for libvirt and the restore; the manifest reader refused it
    ("uuid_form", None),
])
def test_restore_and_manifest_reader_agree(tmp_path, ds, case, reason):
    src = os.path.join(ds, "web1.img")
    xml = {"oversized": domain_xml(src, description="x" * MAX),
           "dtd": domain_xml(src, head="<!DOCTYPE domain [<!ENTITY e 'web1'>]>"),
           "uuid_form": domain_xml(src).replace(UUID, UUID.replace("-", "").upper())}[case]
    vm_dir = manifest_dir(tmp_path, ds, xml)
    if reason is None:
        assert dr.validate_domain_xml(xml, [ds], expected_uuid=UUID, expected_name="web1")["uuid"] == UUID
        man = mf.vet(mf.load(vm_dir), [ds], None)
        assert man["vm"]["uuid"] == UUID and man["allowed_paths"] == [ds]
        return
    with pytest.raises(dr.RestoreError, match=reason):
        dr.validate_domain_xml(xml, [ds], expected_uuid=UUID, expected_name="web1")
    with pytest.raises(mf.ManifestError, match="VM web1 refused: .*%s" % reason):
        mf.load(vm_dir)


def test_one_parser_for_live_and_saved_xml():
    """Live XML (vm_info, the backup's mapping) and saved XML are parsed by the same function with the same rules."""
    with pytest.raises(dx.DomainXmlError, match="DTD or entity"):
        dx.parse_domain_xml("<!DOCTYPE domain [<!ENTITY e 'x'>]><domain><name>&e;</name></domain>")
    rec = dx.parse_domain_xml("<domain><name>a</name><os><nvram template='/t'><source file='/nv/a.fd'/></nvram></os>"
                              "<devices><disk type='file' device='disk'><source file='/ds/a.img'>"
                              "<dataStore type='file'><source file='/ds/a.data'/></dataStore></source>"
                              "<target dev='vda'/></disk></devices></domain>")
    assert rec["nvram"] == "/nv/a.fd" and rec["disks"][0]["path"] == "/ds/a.img"
    assert dx.used_paths(dx.parse_root("<domain><devices><disk><source file='/ds/a.img'><dataStore><source "
                                       "file='/ds/a.data'/></dataStore></source></disk></devices>"
                                       "<os><nvram>/nv/a.fd</nvram></os></domain>")) == {
        "/ds/a.img", "/ds/a.data", "/nv/a.fd"}
