# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Copies of the backups that another cluster holds (a SnapVault/SnapMirror destination on a DR cluster, peered
with the primary): which inventory controller holds each; their snapshots as catalogue input (restore), and
their updates started there (backup).

A relationship lives on its destination cluster; the primary's controller only names such a copy
(ontap_snapshot_info's copies_elsewhere, with the cluster). The restore role then asks the inventory's other
ONTAP controllers for that svm:volume: the one that answers with its snapshots holds it. Nothing outside the
inventory is contacted, and the user declares no controller twice. A copy no inventory controller holds stays
unlisted, with a note naming the cluster and the SVM and what to add to the inventory.

This plugin_util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence


def _listed_ok(res: Mapping[str, Any]) -> bool:
    return not res.get("failed") and not res.get("skipped")


def remote_asks(primary_results: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The copies the primaries' controllers named but could not list because another cluster holds them:
    [{controller (the primary's), copy_of, location, kind, cluster}], each once."""
    out: List[Dict[str, Any]] = []
    seen = set()
    for res in primary_results or []:
        if not _listed_ok(res):
            continue
        ctrl = res.get("controller") or res.get("item")
        for c in res.get("copies_elsewhere") or []:
            if not isinstance(c, Mapping) or not c.get("cluster") or not c.get("location"):
                continue
            key = (ctrl, c.get("copy_of"), c.get("location"))
            if key in seen:
                continue
            seen.add(key)
            out.append({"controller": ctrl, "copy_of": c.get("copy_of"), "location": c.get("location"),
                        "kind": c.get("kind"), "cluster": c.get("cluster")})
    return out


def ask_plan(asks: Sequence[Mapping[str, Any]], controllers: Sequence[str]) -> List[Dict[str, Any]]:
    """One question per (inventory controller, copy location): [{controller, location}]. CONTROLLERS are the
    inventory's ONTAP controllers; the primary's own controller is not asked again (it cannot list the copy)."""
    locations = sorted(set(str(a["location"]) for a in asks))
    primaries = set(a.get("controller") for a in asks)
    return [{"controller": str(c), "location": loc} for c in controllers if c not in primaries for loc in locations]


def remote_copies(asks: Sequence[Mapping[str, Any]], answers: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """ANSWERS: the ontap_snapshot_info results of ask_plan's questions (each with `entry`: the question). Returns
    {results: catalogue input, one per primary controller ({controller, copies: records as ontap_snapshot_info's
    copies plus copy_controller and cluster}), held: [{location, cluster, copy_controller}], notes: [the copies
    no inventory controller holds, and what to do]}. A copy two controllers answer for is taken from the first."""
    holder: Dict[str, Mapping[str, Any]] = {}
    for res in answers or []:
        entry = res.get("entry") or {}
        loc = entry.get("location")
        if not loc or loc in holder or not _listed_ok(res):
            continue
        svm, _sep, vol = str(loc).partition(":")
        snaps = [s for s in res.get("snapshots") or [] if s.get("svm") == svm and s.get("volume") == vol]
        holder[str(loc)] = {"controller": entry.get("controller"), "snapshots": snaps}
    results: Dict[str, Dict[str, Any]] = {}
    held: List[Dict[str, Any]] = []
    notes: List[str] = []
    for ask in asks or []:
        loc = str(ask["location"])
        if loc not in holder:
            svm = loc.partition(":")[0]
            notes.append("The %s copy %s of %s is on cluster %s (SVM %s), which no controller of this inventory "
                         "holds: its backups are not listed. Add a controller of cluster %s (with a login that may "
                         "read volume %s) to ontap_controllers to list and restore from it."
                         % (ask.get("kind") or "SnapMirror", loc, ask.get("copy_of"), ask.get("cluster"), svm,
                            ask.get("cluster"), loc))
            continue
        got = holder[loc]
        held.append({"location": loc, "cluster": ask.get("cluster"), "copy_controller": got["controller"]})
        item = results.setdefault(str(ask["controller"]), {"controller": ask["controller"], "snapshots": [],
                                                           "copies": []})
        item["copies"].extend(dict(s, copy_of=ask.get("copy_of"), location=loc, kind=ask.get("kind"),
                                   copy_controller=got["controller"], cluster=ask.get("cluster"))
                              for s in got["snapshots"])
    return {"results": [results[k] for k in sorted(results)], "held": held, "notes": notes}


def _held(res: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    return [r for r in res.get("not_updated") or [] if isinstance(r, Mapping) and r.get("held_by")]


def update_asks(primary_results: Sequence[Mapping[str, Any]], controllers: Sequence[str]) -> List[Dict[str, Any]]:
    """ontap_snapmirror results of the primaries' controllers (looped over them; `item` the controller) → one
    question per other inventory controller: {controller, primary, volumes (the sources whose relationships
    another cluster holds)}. A controller of another cluster updates those it holds and has none of the others."""
    out: List[Dict[str, Any]] = []
    for res in primary_results or []:
        if not _listed_ok(res):
            continue
        primary = res.get("item")
        sources = sorted(set(str(r.get("source")) for r in _held(res)))
        if sources:
            out.extend({"controller": str(c), "primary": primary, "volumes": sources}
                       for c in controllers if c != primary)
    return out


def update_results(primary_results: Sequence[Mapping[str, Any]],
                   answers: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The answers of update_asks' questions as results of the primaries' controllers (`item` the primary), for
    the backup report: per relationship another cluster holds, what its holder did (updated, not updated, or its
    error). A relationship no inventory controller holds keeps the primary's `not_updated` entry (its reason says
    what to add to the inventory)."""
    wanted: Dict[Any, set] = {}
    for res in primary_results or []:
        if _listed_ok(res):
            wanted.setdefault(res.get("item"), set()).update(str(r.get("destination")) for r in _held(res))
    out: List[Dict[str, Any]] = []
    for res in answers or []:
        entry = res.get("entry") or {}
        primary = entry.get("primary")
        dests = wanted.get(primary) or set()
        if res.get("failed"):
            # a holder whose transfer failed (a controller that holds none of them does not fail)
            msg = "%s (controller %s)" % (res.get("msg"), entry.get("controller"))
            out.append({"item": primary, "failed": True, "msg": msg})
            continue
        rels = [r for r in res.get("relationships") or [] if str(r.get("destination")) in dests]
        if not rels:
            continue
        out.append({"item": primary, "relationships": rels,
                    "updated": [r for r in res.get("updated") or [] if str(r.get("destination")) in dests],
                    "not_updated": [r for r in res.get("not_updated") or [] if str(r.get("destination")) in dests]})
    return out
