"""NetApp's `netapp-ontap` Python client (REST), unchanged, on the resources the collection touches:
cluster, nodes, software, SVMs and peers, interfaces, volumes, snapshots, jobs, LUNs, SnapMirror
relationships/transfers/policies, consistency groups. Effects are checked in the simulator's state."""

from __future__ import annotations

import pytest
from netapp_ontap import HostConnection, config
from netapp_ontap.error import NetAppRestError
from netapp_ontap.resources import (
    Cluster,
    ConsistencyGroup,
    ConsistencyGroupSnapshot,
    IpInterface,
    Job,
    Lun,
    Node,
    SnapmirrorPolicy,
    SnapmirrorRelationship,
    SnapmirrorTransfer,
    Snapshot,
    Software,
    Svm,
    SvmPeer,
    Volume,
)


@pytest.fixture
def conn(nc, monkeypatch):
    """netapp_ontap's global connection to the reset simulator, TLS verified against its CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", nc.sim.ca_file)
    connection = HostConnection(nc.sim.host, username="admin", password="netapp123", verify=True,
                                port=nc.sim.port, poll_interval=0.05, poll_timeout=30)
    previous = config.CONNECTION
    config.CONNECTION = connection
    yield nc
    config.CONNECTION = previous


def _vol(name: str) -> Volume:
    return Volume.find(name=name, svm={"name": "svm1"})


def test_cluster_nodes_software(conn):
    cluster = Cluster()
    cluster.get(fields="name,version")
    assert cluster.name == "nc-cluster" and cluster.version.major == 13
    nodes = list(Node.get_collection(fields="name,serial_number,version"))
    assert [n.name for n in nodes] == ["nc-cluster-01"] and nodes[0].version.minor == 1
    software = Software()
    software.get()
    assert software.version == "9.13.1" and software.nodes[0].name == "nc-cluster-01"


def test_svms_peers_interfaces(conn):
    assert {s.name for s in Svm.get_collection(fields="state,subtype")} == {"svm1", "svm_dr"}
    peers = list(SvmPeer.get_collection(fields="svm,peer,state,applications"))
    assert {(p.svm.name, p.peer.svm.name) for p in peers} == {("svm1", "svm_dr"), ("svm_dr", "svm1")}
    assert all(p.state == "peered" and p.peer.cluster.name == "nc-cluster" for p in peers)
    lifs = {i.name: i for i in IpInterface.get_collection(fields="ip.address,svm.name,scope,services")}
    assert lifs["svm1_data1"].ip.address == "127.0.0.1" and lifs["svm1_data1"].svm.name == "svm1"
    assert lifs["cluster_mgmt"].scope == "cluster"


def test_unknown_field_is_refused_with_262197(conn):
    with pytest.raises(NetAppRestError) as err:
        list(Volume.get_collection(fields="name,bogus_field"))
    assert err.value.response_body["error"]["code"] == "262197"
    assert err.value.response_body["error"]["message"] == 'The value "bogus_field" is invalid for field "fields"'


def test_volume_get_and_resize(conn):
    vol = _vol("vol_ds1")
    vol.get(fields="space.size,nas.path,type,style,state,svm.name")
    assert vol.space.size == 1 << 30 and vol.nas.path == "/vol_ds1"
    vol.size = 3 << 30
    vol.patch(poll=True)
    assert conn.volume("vol_ds1")["size"] == 3 << 30


def test_snapshot_post_patch_delete(conn):
    vol = _vol("vol_ds1")
    snap = Snapshot(vol.uuid, name="py1", comment="c1", snapmirror_label="daily")
    snap.post(poll=True)
    assert conn.snapshots("vol_ds1")["py1"]["comment"] == "c1"
    found = Snapshot.find(vol.uuid, name="py1", fields="comment,snapmirror_label,create_time")
    assert found.snapmirror_label == "daily"
    found.comment = "c2"
    found.patch(poll=True)
    assert conn.snapshots("vol_ds1")["py1"]["comment"] == "c2"
    found.delete(poll=True)  # netapp-ontap sends {} as the DELETE body
    assert conn.snapshots("vol_ds1") == {}
    jobs = list(Job.get_collection(fields="state,description"))
    assert jobs and all(j.state == "success" for j in jobs)


def test_snapshot_delete_collection(conn):
    vol = _vol("vol_ds2")
    for name in ("a1", "a2", "b1"):
        Snapshot(vol.uuid, name=name).post(poll=True)
    Snapshot.delete_collection(vol.uuid, name="a*", poll=True)
    assert set(conn.snapshots("vol_ds2")) == {"b1"}


def test_luns(conn):
    luns = list(Lun.get_collection(fields="serial_number,location.volume.name,space.size,os_type"))
    assert [(lu.name, lu.serial_number, lu.location.volume.name) for lu in luns] == [
        ("/vol/vol_san/lun1", "D31sh#DQGQUu", "vol_san")]


def test_snapmirror_relationship_transfer_policy(conn):
    src = _vol("vol_ds2")
    Snapshot(src.uuid, name="m1").post(poll=True)
    rel = SnapmirrorRelationship.find(**{"destination.path": "svm_dr:vol_ds2_mirror"},
                                      fields="state,healthy,policy,source")
    assert rel.source.path == "svm1:vol_ds2" and rel.policy.name == "MirrorAllSnapshots"
    transfer = SnapmirrorTransfer(rel.uuid)
    transfer.post(poll=True)
    assert "m1" in conn.snapshots("vol_ds2_mirror")
    done = list(SnapmirrorTransfer.get_collection(rel.uuid, fields="state"))
    assert done and done[-1].state == "success"
    policy = SnapmirrorPolicy.find(name="vault_daily", fields="type,retention,create_snapshot_on_source")
    assert policy.retention[0].label == "daily" and policy.create_snapshot_on_source is False


def test_consistency_group_and_snapshot(conn):
    cg = ConsistencyGroup(name="cg_py", svm={"name": "svm1"},
                          volumes=[{"name": "vol_ds1", "provisioning_options": {"action": "add"}},
                                   {"name": "vol_ds2", "provisioning_options": {"action": "add"}}])
    cg.post(poll=True)
    cg = ConsistencyGroup.find(name="cg_py", fields="volumes.name")
    assert {v.name for v in cg.volumes} == {"vol_ds1", "vol_ds2"}
    snap = ConsistencyGroupSnapshot(cg.uuid, name="cgs1", comment="kvmsnap")
    snap.post(poll=True)
    assert conn.snapshots("vol_ds1")["cgs1"]["create_time"] == conn.snapshots("vol_ds2")["cgs1"]["create_time"]
    snap = ConsistencyGroupSnapshot.find(cg.uuid, name="cgs1")
    snap.delete(poll=True)
    assert "cgs1" not in conn.snapshots("vol_ds1")


def test_snapmirror_restore_relationship_and_file_transfer(conn):
    """A file of a vaulted snapshot back into its source volume, as netapp_ontap does a SnapMirror restore:
    a relationship with restore=true, a transfer with files, then the relationship deleted."""
    vdir = conn.sim.data / "volumes" / "svm1" / "vol_ds1"
    (vdir / "a.img").write_text("one")
    Snapshot(_vol("vol_ds1").uuid, name="v1", snapmirror_label="daily").post(poll=True)
    vault = SnapmirrorRelationship.find(**{"destination.path": "svm_dr:vol_ds1_vault"})
    SnapmirrorTransfer(vault.uuid).post(poll=True)
    (vdir / "a.img").write_text("two")
    rel = SnapmirrorRelationship(source={"path": "svm_dr:vol_ds1_vault"}, destination={"path": "svm1:vol_ds1"},
                                 restore=True)
    rel.post(poll=True)
    found = SnapmirrorRelationship.find(**{"destination.path": "svm1:vol_ds1"}, fields="restore,state")
    assert found.restore is True
    SnapmirrorTransfer(found.uuid, source_snapshot="v1",
                       files=[{"source_path": "/a.img", "destination_path": "/a.img"}]).post(poll=True)
    assert (vdir / "a.img").read_text() == "one"
    with pytest.raises(NetAppRestError) as too_many:
        SnapmirrorTransfer(found.uuid, source_snapshot="v1",
                           files=[{"source_path": "/a.img", "destination_path": "/a.img"}] * 9).post(poll=True)
    assert "at most 8" in str(too_many.value)
    found.delete(poll=True)
    assert not list(SnapmirrorRelationship.get_collection(**{"destination.path": "svm1:vol_ds1"}))
