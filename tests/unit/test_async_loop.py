"""Background jobs (async, poll 0) waited for with async_status -> the loop result the role reads afterwards."""

from __future__ import annotations

from ansible_collections.kvmsnap.core.plugins.filter.roles import async_loop_results


def test_jobs_become_the_foreground_loop_result():
    wait = {"results": [
        {"job": {"vm": {"name": "web1"}, "ansible_job_id": "j1"}, "finished": 1, "ansible_job_id": "j1",
         "changed": True, "aside": {"xml": "/x/web1.xml"}, "actions": ["shutdown", "destroy"], "attempts": 3},
        {"job": {"vm": {"name": "db1"}, "ansible_job_id": "j2"}, "finished": 1, "failed": True,
         "msg": "VM db1 is running; set force", "attempts": 1},
        {"job": {"vm": {"name": "app1"}, "ansible_job_id": "j3"}, "finished": 0, "failed": True, "attempts": 28}]}
    res = async_loop_results(wait, "job", "vm")
    web, db, app = res["results"]
    assert web == {"vm": {"name": "web1"}, "ansible_loop_var": "vm", "changed": True, "aside": {"xml": "/x/web1.xml"},
                   "actions": ["shutdown", "destroy"], "failed": False}
    assert db["failed"] is True and db["msg"] == "VM db1 is running; set force" and db["vm"] == {"name": "db1"}
    assert app["failed"] is True and "app1 did not finish within the wait (28 checks)" in app["msg"]
    assert res["failed"] is True and res["changed"] is True
    empty = {"results": [], "failed": False, "changed": False, "msg": "no items"}
    assert async_loop_results({"results": []}, "job", "vm") == empty
