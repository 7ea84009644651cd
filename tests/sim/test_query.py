"""REST query engine details: operators, quoting, order_by, dotted fields on lists, exclusions."""

from __future__ import annotations

import sys

import pytest
from helpers.sim_fixtures import REPO

sys.path.insert(0, str(REPO / "tests" / "lab"))
from ontapsim import query

REC = {"name": "vol_a", "size": 100, "ok": True, "svm": {"name": "svm1"}, "services": ["data_nfs", "data_core"],
       "serial": "ab*|!c", "_links": {"self": {"href": "/x"}}}


@pytest.mark.parametrize("key, spec, expected", [
    ("name", "vol_a", True), ("name", "vol_*", True), ("name", "VOL_*", True), ("name", "vol_b", False),
    ("name", "vol_b|vol_a", True), ("name", "!vol_a", False), ("name", "!vol_b", True),
    ("size", ">50", True), ("size", "<=99", False), ("size", "50..150", True), ("size", "101..200", False),
    ("ok", "true", True), ("ok", "false", False), ("svm.name", "svm1", True),
    ("services", "data_nfs", True), ("services", "data_iscsi", False), ("services", "!data_iscsi", True),
    ("serial", '"ab*|!c"', True), ("serial", "{ab*|!c}", True), ("missing", "x", False), ("missing", "null", True),
])
def test_filter_operators(key, spec, expected):
    assert query.matches(REC, key, spec) is expected


def test_select_fields():
    assert query.select_fields(REC, None, ("name",)) == {"name": "vol_a", "_links": {"self": {"href": "/x"}}}
    out = query.select_fields(REC, "svm.name,size", ("name",))
    assert out == {"name": "vol_a", "svm": {"name": "svm1"}, "size": 100, "_links": {"self": {"href": "/x"}}}
    assert "svm" not in query.select_fields(REC, "*,!svm", ())
    lst = {"uuid": "u", "volumes": [{"name": "a", "uuid": "1"}, {"name": "b", "uuid": "2"}]}
    assert query.select_fields(lst, "volumes.name", ("uuid",)) == {"uuid": "u", "volumes": [{"name": "a"},
                                                                                            {"name": "b"}]}


def test_order_by():
    recs = [{"n": "b", "s": 2}, {"n": "a", "s": 10}, {"n": "c", "s": 1}]
    assert [r["n"] for r in query.order(recs, "n")] == ["a", "b", "c"]
    assert [r["n"] for r in query.order(recs, "n desc")] == ["c", "b", "a"]


def test_order_by_and_comparison_over_http(fresh):
    vol = fresh.volume("vol_ds1")
    for n in ("b", "a", "c"):
        fresh.create_snapshot(vol["uuid"], n)
    names = [s["name"] for s in fresh.get(f"/api/storage/volumes/{vol['uuid']}/snapshots", order_by="name desc")
             ["records"]]
    assert names == ["c", "b", "a"]
    big = fresh.get("/api/storage/volumes", **{"space.size": ">1000"})
    assert big["num_records"] == 2
