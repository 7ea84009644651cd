# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A loop of background jobs (async, poll 0) and its async_status wait loop -> what the loop itself would have
registered had it run in the foreground: {results: [module result + the original loop variable], failed}.

This plugin_util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

_ASYNC_KEYS = ("ansible_job_id", "started", "finished", "results_file", "attempts", "_ansible_no_log")


def foreground(wait: Mapping[str, Any], job_var: str, loop_var: str) -> Dict[str, Any]:
    """WAIT: the registered async_status loop (loop_var JOB_VAR over the jobs' registered results, whose own loop
    variable is LOOP_VAR). A job that did not finish in the wait is failed, with a message naming its item."""
    results = []
    for item in wait.get("results") or []:
        job = item.get(job_var) or {}
        out = {k: v for k, v in item.items() if k not in _ASYNC_KEYS and k != job_var}
        out[loop_var] = job.get(loop_var)
        out["ansible_loop_var"] = loop_var
        if not item.get("finished"):
            name = (job.get(loop_var) or {}).get("name") if isinstance(job.get(loop_var), Mapping) else None
            out["failed"] = True
            out["msg"] = ("%s did not finish within the wait (%s checks); it may still be running on the host"
                          % (name or "the job", item.get("attempts", "?")))
        else:
            out["failed"] = bool(item.get("failed"))
        results.append(out)
    return {"results": results, "failed": any(r["failed"] for r in results), "changed": any(
        r.get("changed") for r in results), "msg": "All items completed" if results else "no items"}
