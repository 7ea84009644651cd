"""REST collection queries: `fields=`, field filters with ONTAP's operators, paging."""

from __future__ import annotations

import copy
import fnmatch
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import SimError

# Query parameters that are not field filters.
CONTROL_PARAMS = {"fields", "max_records", "return_records", "return_timeout", "order_by", "start.index",
                  "pretty", "continue_on_failure", "list_destinations_only"}
_MISSING = object()


def get_path(record: Any, dotted: str) -> Any:
    cur = record
    for part in dotted.split("."):
        if isinstance(cur, list):
            vals = [get_path(item, part) for item in cur]
            cur = [v for v in vals if v is not _MISSING]
            continue
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _split_unquoted(text: str, sep: str) -> list[str]:
    out, buf, quote = [], "", None
    for ch in text:
        if quote:
            buf += ch
            if ch == quote:
                quote = None
        elif ch in "\"{":
            quote = '"' if ch == '"' else "}"
            buf += ch
        elif ch == sep:
            out.append(buf)
            buf = ""
        else:
            buf += ch
    out.append(buf)
    return out


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _match_one(value: Any, pattern: str) -> bool:
    """PATTERN against one scalar VALUE: literal (quoted), !neg, <,>,<=,>=, a..b, wildcard *."""
    neg = False
    if pattern.startswith("!"):
        neg, pattern = True, pattern[1:]
    if len(pattern) >= 2 and ((pattern[0] == '"' and pattern[-1] == '"') or
                              (pattern[0] == "{" and pattern[-1] == "}")):
        result = _scalar(value) == pattern[1:-1]
        return result != neg
    sval = _scalar(value)
    result: bool
    for op in ("<=", ">=", "<", ">"):
        if pattern.startswith(op):
            rhs = pattern[len(op):]
            a, b = _num(sval), _num(rhs)
            left, right = (a, b) if a is not None and b is not None else (sval, rhs)
            result = {"<=": left <= right, ">=": left >= right, "<": left < right, ">": left > right}[op]
            return result != neg
    if ".." in pattern:
        lo, hi = pattern.split("..", 1)
        a, lo_n, hi_n = _num(sval), _num(lo), _num(hi)
        if a is not None and lo_n is not None and hi_n is not None:
            result = lo_n <= a <= hi_n
        else:
            result = lo <= sval <= hi
        return result != neg
    if pattern == "null":
        result = value is None
    elif "*" in pattern:
        result = fnmatch.fnmatchcase(sval.lower(), pattern.lower().replace("[", "[[]"))
    else:
        result = sval == pattern or (isinstance(value, bool) and sval == pattern.lower())
    return result != neg


def matches(record: dict[str, Any], key: str, spec: str) -> bool:
    value = get_path(record, key)
    if value is _MISSING:
        value = None
    values = value if isinstance(value, list) else [value]
    for alt in _split_unquoted(spec, "|"):
        if alt.startswith("!"):
            # Negation must hold for the whole list (no element equal).
            if all(_match_one(v, alt) for v in values):
                return True
        elif any(v is not None and _match_one(v, alt) for v in values) or (alt == "null" and value is None):
            return True
    return False


def apply_filters(records: list[dict[str, Any]], filters: dict[str, str]) -> list[dict[str, Any]]:
    return [r for r in records if all(matches(r, k, v) for k, v in filters.items())]


def _set_path(out: dict[str, Any], src: dict[str, Any], parts: list[str]) -> None:
    key = parts[0]
    if key not in src:
        return
    if len(parts) == 1:
        out[key] = copy.deepcopy(src[key])
        return
    val = src[key]
    if isinstance(val, dict):
        sub = out.setdefault(key, {})
        if isinstance(sub, dict):
            _set_path(sub, val, parts[1:])
    elif isinstance(val, list):
        if key not in out or not isinstance(out[key], list):
            out[key] = [{} for _item in val]
        for o, s in zip(out[key], val):
            if isinstance(s, dict):
                _set_path(o, s, parts[1:])


def _del_path(out: dict[str, Any], parts: list[str]) -> None:
    if len(parts) == 1:
        out.pop(parts[0], None)
    elif isinstance(out.get(parts[0]), dict):
        _del_path(out[parts[0]], parts[1:])


def select_fields(record: dict[str, Any], fields: str | None, keys: tuple[str, ...]) -> dict[str, Any]:
    """The record as a collection GET returns it: FIELDS (or just KEYS when None) plus _links."""
    wanted = [f.strip() for f in (fields or "").split(",") if f.strip()]
    include = [f for f in wanted if not f.startswith("!")]
    exclude = [f[1:] for f in wanted if f.startswith("!")]
    if "*" in include or "**" in include:
        out = copy.deepcopy(record)
    else:
        out = {}
        for k in keys:
            if k in record:
                out[k] = copy.deepcopy(record[k])
        for f in include:
            _set_path(out, record, f.split("."))
    for f in exclude:
        _del_path(out, f.split("."))
    if "_links" in record:
        out["_links"] = copy.deepcopy(record["_links"])
    return out


def order(records: list[dict[str, Any]], order_by: str | None) -> list[dict[str, Any]]:
    if not order_by:
        return records
    for term in reversed([t.strip() for t in order_by.split(",") if t.strip()]):
        field, _sep, direction = term.partition(" ")
        records = sorted(records, key=lambda r: (_scalar(get_path(r, field)) if get_path(r, field) is not _MISSING
                                                 else ""), reverse=direction.strip().lower() == "desc")
    return records


@lru_cache(maxsize=None)
def known_fields(resource: str) -> frozenset[str]:
    """The field names ONTAP's REST API has for RESOURCE (fields.json, from netapp-ontap's schemas;
    regenerate with gen_fields.py). "a.b.*" marks an object whose deeper names are not checked."""
    doc = json.loads(Path(__file__).with_name("fields.json").read_text())
    return frozenset(doc["resources"][resource])


def check_fields(resource: str, fields: str | None) -> None:
    """400 code 262197, as ONTAP answers, for a `fields=` name RESOURCE does not have."""
    known = known_fields(resource)
    for raw in (fields or "").split(","):
        name = raw.strip().lstrip("!")
        if not name or name in ("*", "**") or name in known:
            continue
        parts = name.split(".")
        if any(".".join(parts[:i]) + ".*" in known for i in range(1, len(parts))):
            continue
        raise SimError("invalid_field", f'The value "{name}" is invalid for field "fields"', target="fields")
