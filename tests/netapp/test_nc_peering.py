"""NetApp's `netapp-ontap` client (REST), unchanged, on two peered simulated clusters: cluster and SVM peers,
a SnapVault relationship held by the DR cluster (listed on the primary with list_destinations_only, updated on
the DR cluster only) and a SnapMirror restore on the primary from the DR cluster's vault."""

from __future__ import annotations

import pytest
from helpers.peer_fixtures import DR, PRIMARY, peered_configs
from helpers.sim_fixtures import start_sim
from netapp_ontap import HostConnection
from netapp_ontap.error import NetAppRestError
from netapp_ontap.resources import ClusterPeer, SnapmirrorRelationship, SnapmirrorTransfer, Snapshot, SvmPeer, Volume

FAST = ["--latency-scale", "0"]


@pytest.fixture
def sites(tmp_path, monkeypatch):
    primary_cfg, dr_cfg = peered_configs(tmp_path / "primary", tmp_path / "dr")
    dr = start_sim(tmp_path / "dr", dr_cfg, extra_args=FAST)
    primary = start_sim(tmp_path / "primary", primary_cfg, extra_args=FAST)
    # the two simulators' CAs in one bundle, for requests
    bundle = tmp_path / "cas.pem"
    bundle.write_text(open(primary.ca_file).read() + open(dr.ca_file).read())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    yield primary, dr
    primary.stop()
    dr.stop()


def _conn(sim) -> HostConnection:
    return HostConnection(sim.host, username="admin", password="netapp123", verify=True, port=sim.port,
                          poll_interval=0.05, poll_timeout=30)


def test_peering_vault_update_and_cross_cluster_restore(sites):
    primary, dr = sites
    vdir = primary.data / "volumes" / "svm1" / "vol_ds1"
    (vdir / "a.img").write_text("one")
    with _conn(primary):
        peers = list(ClusterPeer.get_collection(fields="name,status,remote"))
        assert [(p.name, p.status.state) for p in peers] == [(DR, "available")]
        svm_peers = list(SvmPeer.get_collection(fields="svm,peer,state"))
        assert [(p.svm.name, p.peer.svm.name, p.peer.cluster.name) for p in svm_peers] == [("svm1", "svm_dr", DR)]
        vol = Volume.find(name="vol_ds1", svm={"name": "svm1"})
        Snapshot(vol.uuid, name="v1", snapmirror_label="daily").post(poll=True)
        assert not list(SnapmirrorRelationship.get_collection())
        seen = list(SnapmirrorRelationship.get_collection(list_destinations_only=True, fields="destination"))
        assert [(r.destination.path, r.destination.cluster.name) for r in seen] == [("svm_dr:vol_ds1_vault", DR)]
        with pytest.raises(NetAppRestError) as refused:
            SnapmirrorTransfer(seen[0].uuid).post(poll=True)
        assert DR in str(refused.value)
    with _conn(dr):
        vault = SnapmirrorRelationship.find(**{"destination.path": "svm_dr:vol_ds1_vault"}, fields="source")
        assert vault.source.path == "svm1:vol_ds1" and vault.source.cluster.name == PRIMARY
        SnapmirrorTransfer(vault.uuid).post(poll=True)
        dst = Volume.find(name="vol_ds1_vault", svm={"name": "svm_dr"})
        assert [s.name for s in Snapshot.get_collection(dst.uuid)] == ["v1"]
    (vdir / "a.img").write_text("two")
    with _conn(primary):
        rel = SnapmirrorRelationship(source={"path": "svm_dr:vol_ds1_vault"}, destination={"path": "svm1:vol_ds1"},
                                     restore=True)
        rel.post(poll=True)
        found = SnapmirrorRelationship.find(**{"destination.path": "svm1:vol_ds1"}, fields="restore,source")
        assert found.restore is True and found.source.cluster.name == DR
        SnapmirrorTransfer(found.uuid, source_snapshot="v1",
                           files=[{"source_path": "/a.img", "destination_path": "/a.img"}]).post(poll=True)
        assert (vdir / "a.img").read_text() == "one"
        found.delete(poll=True)
        with pytest.raises(NetAppRestError) as unpeered:
            SnapmirrorRelationship(source={"path": "svm_other:vol_other"}, destination={"path": "svm1:vol_ds1"},
                                   restore=True).post(poll=True)
        assert "not peered" in str(unpeered.value)
