"""The REST client waits for ONTAP jobs with return_timeout (bounded by the take's deadline and by ONTAP's 120 s)
and polls /api/cluster/jobs only when ONTAP still answers 202. The simulator runs each snapshot job for its
configured latency and answers a return_timeout call when the job ends."""

from __future__ import annotations

import time

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect


@pytest.fixture
def sim(sim_clean):
    return sim_clean


def client(sim, timeout=30):
    return connect(dict(sim.conn(), timeout=timeout, retries=1, cert_file=None, key_file=None), "test")


def calls_since(sim, seq):
    return [c for c in sim.admin("GET", "/_sim/calls")["calls"] if c["seq"] > seq]


def last_seq(sim):
    calls = sim.admin("GET", "/_sim/calls")["calls"]
    return calls[-1]["seq"] if calls else 0


def test_a_snapshot_job_is_awaited_with_return_timeout_and_never_polled(sim):
    c = client(sim)
    plan = c.prepare_snapshot_set([("svm1", "vol_ds1")], "jw_one", precheck=False)
    seq = last_seq(sim)
    with sim.latency({"snapshot_create": 0.5}, scale=1):
        t0 = time.monotonic()
        c.take_snapshot_set(plan, deadline=time.monotonic() + 7.9)
        took = time.monotonic() - t0
    calls = calls_since(sim, seq)
    assert [(x["method"], x["status"]) for x in calls] == [("POST", 201)], calls
    assert "return_timeout=7" in calls[0]["query"]  # the rest of the deadline, whole seconds
    assert 0.5 <= took < 1.5, took
    assert c.finish_snapshot_set(plan)["snapshots"][0]["uuid"]


def test_return_timeout_is_the_calls_timeout_at_most_120(sim):
    c = client(sim, timeout=600)
    seq = last_seq(sim)
    c.create_snapshot_set([("svm1", "vol_ds1")], "jw_long")
    posts = [x for x in calls_since(sim, seq) if x["method"] == "POST"]
    assert posts and "return_timeout=120" in posts[0]["query"], posts


def test_a_job_still_running_at_the_return_timeout_is_polled_to_its_end(sim):
    sim.admin("POST", "/_sim/faults", {"action": "job_running", "method": "POST", "path": "/api/storage/volumes/*/snapshots",
                                       "count": 1, "seconds": 2.5})
    c = client(sim)
    plan = c.prepare_snapshot_set([("svm1", "vol_ds1")], "jw_poll", precheck=False)
    seq = last_seq(sim)
    c.take_snapshot_set(plan, deadline=time.monotonic() + 1.5)  # return_timeout=1: ONTAP answers 202
    calls = calls_since(sim, seq)
    assert calls[0]["method"] == "POST" and calls[0]["status"] == 202 and "return_timeout=1" in calls[0]["query"]
    polls = [x for x in calls[1:] if x["path"].startswith("/api/cluster/jobs/")]
    assert polls and all(x["method"] == "GET" for x in calls[1:]), calls
    assert c.finish_snapshot_set(plan)["snapshots"][0]["uuid"]
