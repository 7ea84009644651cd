"""ZAPI XML plumbing: the envelope, element builders, input readers and query matching."""

from __future__ import annotations

import fnmatch
import xml.etree.ElementTree as ET
from typing import Any

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE netapp SYSTEM "file:/etc/netapp_gx.dtd">\n'
        '<netapp version="1.21" xmlns="http://www.netapp.com/filer/admin">')


class ZapiError(Exception):
    def __init__(self, errno: str, reason: str) -> None:
        super().__init__(reason)
        self.errno = errno
        self.reason = reason


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def strip_ns(elem: ET.Element) -> ET.Element:
    for e in elem.iter():
        e.tag = local_name(e.tag)
    return elem


def child_text(elem: ET.Element, name: str, default: str | None = None) -> str | None:
    child = elem.find(name)
    if child is None or child.text is None:
        return default
    return child.text.strip()


def to_bool(value: str | None, default: bool) -> bool:
    return default if value is None else value.strip().lower() == "true"


def require(elem: ET.Element, name: str) -> str:
    value = child_text(elem, name)
    if not value:
        raise ZapiError("13006", f"Missing input: {name}")
    return value


def E(tag: str, text: Any = None, children: list[ET.Element] | None = None) -> ET.Element:
    el = ET.Element(tag)
    if text is not None:
        el.text = ("true" if text else "false") if isinstance(text, bool) else str(text)
    for c in children or []:
        el.append(c)
    return el


def fields(tag: str, values: dict[str, Any]) -> ET.Element:
    """<tag> with one child per non-None value (dict values nest, ET elements are appended)."""
    el = ET.Element(tag)
    for k, v in values.items():
        if v is None:
            continue
        if isinstance(v, ET.Element):
            el.append(v)
        elif isinstance(v, dict):
            el.append(fields(k, v))
        else:
            el.append(E(k, v))
    return el


def _value_matches(have: str, want: str) -> bool:
    """One ZAPI query value: a|b alternatives, * wildcards; booleans compare case-insensitively."""
    for alt in want.split("|"):
        if "*" in alt:
            if fnmatch.fnmatchcase(have, alt):
                return True
        elif have == alt or (alt.lower() in ("true", "false") and have.lower() == alt.lower()):
            return True
    return False


def query_matches(query: ET.Element, record: ET.Element, aliases: dict[str, str]) -> bool:
    """Every leaf of QUERY matches the same path in RECORD (ALIASES renames query tags)."""
    for q in query:
        target = record.find(aliases.get(q.tag, q.tag))
        if len(q):
            if target is None or not query_matches(q, target, aliases):
                return False
            continue
        want = (q.text or "").strip()
        if want and (target is None or not _value_matches((target.text or "").strip(), want)):
            return False
    return True


def reply_failure(errno: str, reason: str) -> bytes:
    res = E("results")
    res.set("status", "failed")
    res.set("errno", str(errno))
    res.set("reason", reason)
    return (HEAD + ET.tostring(res, encoding="unicode") + "</netapp>").encode()


def reply_success(results: ET.Element | None) -> bytes:
    res = results if results is not None else E("results")
    res.tag = "results"
    res.set("status", "passed")
    return (HEAD + ET.tostring(res, encoding="unicode") + "</netapp>").encode()
