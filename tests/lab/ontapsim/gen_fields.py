"""Regenerate fields.json: the REST field names ONTAP knows for each resource the simulator serves,
read from the resource schemas of NetApp's `netapp-ontap` client (one package version = one ONTAP
release's API). The simulator answers 400 code 262197 for a `fields=` name that is not listed.

    .venv/bin/python tests/lab/ontapsim/gen_fields.py     # needs netapp-ontap (requirements-dev.txt)

The simulator itself only reads the JSON file; it never imports netapp_ontap.
"""

from __future__ import annotations

import importlib
import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("fields.json")
DEPTH = 2  # dotted names up to this many parts; an object deeper than that is open ("a.b.*")

# simulator resource key -> netapp_ontap resource (module, class)
RESOURCES: dict[str, tuple[str, str]] = {
    "cluster": ("cluster", "Cluster"),
    "node": ("node", "Node"),
    "job": ("job", "Job"),
    "svm": ("svm", "Svm"),
    "svm_peer": ("svm_peer", "SvmPeer"),
    "ip_interface": ("ip_interface", "IpInterface"),
    "volume": ("volume", "Volume"),
    "snapshot": ("snapshot", "Snapshot"),
    "file_info": ("file_info", "FileInfo"),
    "lun": ("lun", "Lun"),
    "aggregate": ("aggregate", "Aggregate"),
    "software": ("software", "Software"),
    "snapmirror_relationship": ("snapmirror_relationship", "SnapmirrorRelationship"),
    "snapmirror_transfer": ("snapmirror_transfer", "SnapmirrorTransfer"),
    "snapmirror_policy": ("snapmirror_policy", "SnapmirrorPolicy"),
    "consistency_group": ("consistency_group", "ConsistencyGroup"),
    "consistency_group_snapshot": ("consistency_group_snapshot", "ConsistencyGroupSnapshot"),
    "account": ("account", "Account"),
    "role": ("role", "Role"),
    "role_privilege": ("role_privilege", "RolePrivilege"),
}


def _names(schema: Any, prefix: str, depth: int, out: set[str]) -> None:
    for name, fld in schema.fields.items():
        key = prefix + (fld.data_key or name)
        out.add(key)
        nested = getattr(fld, "schema", None) if hasattr(fld, "nested") else None
        inner = getattr(fld, "inner", None)  # List(Nested(...))
        if nested is None and inner is not None and hasattr(inner, "nested"):
            nested = inner.schema
        if nested is None:
            if type(fld).__name__ in ("Dict", "Raw"):
                out.add(key + ".*")
            continue
        if depth + 1 >= DEPTH:
            out.add(key + ".*")
            continue
        _names(nested, key + ".", depth + 1, out)


def build() -> dict[str, Any]:
    resources: dict[str, list[str]] = {}
    for key, (mod, cls) in sorted(RESOURCES.items()):
        schema = getattr(importlib.import_module(f"netapp_ontap.resources.{mod}"), cls)._schema()
        names: set[str] = set()
        _names(schema, "", 0, names)
        resources[key] = sorted(names)
    return {"source": f"netapp-ontap {version('netapp-ontap')} resource schemas", "depth": DEPTH,
            "resources": resources}


if __name__ == "__main__":
    doc = build()
    # One resource a line: small diffs when a new netapp-ontap release adds fields.
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc["resources"].items()]
    OUT.write_text("{\n" + f'"source": {json.dumps(doc["source"])},\n"depth": {doc["depth"]},\n"resources": {{\n'
                   + ",\n".join(lines) + "\n}}\n")
    print(f"wrote {OUT}")
