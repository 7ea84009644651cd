"""ontap_snapshot state=verified against the simulator, REST and ZAPI: the verify role's mark on a snapshot set.

The comment of a good snapshot gets verified=<time> on every volume (an earlier token replaced, the rest kept);
ontap_snapshot_info and the catalog read it back; a pending snapshot or a foreign one is refused and nothing changes.
"""

from __future__ import annotations

import pytest

from ansible_collections.kvmsnap.core.plugins.plugin_utils._catalog import build_catalog, select

TRANSPORTS = ("rest", "zapi")
VOLS = ["vol_ds1", "vol_ds2"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mark_verified_keeps_the_comment_and_refuses_what_is_no_backup(sim_factory, module_runner, transport):
    sim = sim_factory()
    conn = dict(sim.conn(transport), svm="svm1", volumes=VOLS)

    def snap(name, confirm=True):
        assert module_runner("ontap_snapshot", dict(conn, name=name, policy="daily", run_id="r1",
                                                    comment="nightly"))["changed"]
        if confirm:
            assert module_runner("ontap_snapshot", dict(conn, name=name, state="confirmed", run_id="r1",
                                                        consistency="filesystem"))["changed"]
    snap("kvmsnap-daily_a")
    snap("kvmsnap-daily_b")
    snap("kvmsnap-daily_p", confirm=False)

    res = module_runner("ontap_snapshot", dict(conn, name="kvmsnap-daily_a", state="verified",
                                               verified_at="20260101T030000Z"), check_mode=True)
    assert res["changed"] and "would mark" in res["msg"]
    res = module_runner("ontap_snapshot", dict(conn, name="kvmsnap-daily_a", state="verified",
                                               verified_at="20260101T030000Z"))
    assert res["changed"] and not res.failed, res
    assert {s["volume"] for s in res["snapshots"]} == set(VOLS)
    assert res["snapshots"][0]["comment"] == ("kvmsnap:v1 policy=daily run=r1 state=good consistency=filesystem "
                                              "verified=20260101T030000Z | nightly")
    res = module_runner("ontap_snapshot", dict(conn, name="kvmsnap-daily_a", state="verified",
                                               verified_at="20260102T030000Z"))
    assert res["snapshots"][0]["comment"].count("verified=") == 1 and "verified=20260102T030000Z" in res[
        "snapshots"][0]["comment"]

    for name, why in (("kvmsnap-daily_p", "is pending, not a good backup"), ("kvmsnap-daily_x", "not found")):
        res = module_runner("ontap_snapshot", dict(conn, name=name, state="verified"))
        assert res.failed and why in res["msg"], res
    res = module_runner("ontap_snapshot", dict(conn, name="kvmsnap-daily_b", state="verified", verified_at="today"))
    assert res.failed and "verified_at: 'today'; allowed: a UTC time YYYYMMDDTHHMMSSZ" in res["msg"]

    info = module_runner("ontap_snapshot_info", dict(sim.conn(transport), svm="svm1", volumes=VOLS))
    assert not info.failed, info
    by = {(s["name"], s["volume"]): s for s in info["snapshots"]}
    assert by[("kvmsnap-daily_a", "vol_ds2")]["kvmsnap"]["verified"] == "20260102T030000Z"
    assert by[("kvmsnap-daily_p", "vol_ds1")]["kvmsnap"]["state"] == "pending"  # unchanged by the refusal
    records = build_catalog([dict(info, item="c1")], ["c1:svm1:vol_ds1", "c1:svm1:vol_ds2"])
    assert select(records, {"kind": "latest", "value": "latest"})["name"] == "kvmsnap-daily_b"
    assert select(records, {"kind": "latest_verified", "value": "latest_verified"})["name"] == "kvmsnap-daily_a"
