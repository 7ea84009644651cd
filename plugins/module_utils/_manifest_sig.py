# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Manifest signatures: HMAC-SHA256 with a key that lives on the controller (docs/security.md).

This module util is PRIVATE to the collection. It may change without notice.

The signature covers the whole manifest document except its own ``signature`` field, in a canonical JSON
form (sorted keys, no whitespace). The manifest lists the SHA-256 of ``domain.xml`` and of ``nvram``, and the
reader checks the files against those digests, so the signature covers them too. Anyone who can write to a
datastore can edit a manifest in a later snapshot, but cannot make a signature without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError

ALG = "hmac-sha256"
MIN_KEY_CHARS = 16


class ManifestKeyError(KvmsnapError, ValueError):
    """A key is unusable (too short, not text)."""


def _key_bytes(key: Any) -> bytes:
    if not isinstance(key, str) or len(key.strip()) < MIN_KEY_CHARS:
        raise ManifestKeyError("the manifest key must be a string of at least %d characters (kvmsnap_manifest_key "
                               "or the key file)" % MIN_KEY_CHARS)
    return key.strip().encode("utf-8")


def canonical(manifest: Dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def key_id(key: str) -> str:
    """A short public name of a key (which key signed a manifest), not usable to recover it."""
    return hashlib.sha256(b"kvmsnap-manifest-key-id:" + _key_bytes(key)).hexdigest()[:16]


def sign(manifest: Dict[str, Any], key: str) -> Dict[str, str]:
    mac = hmac.new(_key_bytes(key), canonical(manifest), hashlib.sha256).hexdigest()
    return {"alg": ALG, "key_id": key_id(key), "value": mac}


def verify(manifest: Dict[str, Any], keys: List[str]) -> Tuple[bool, str]:
    """(ok, reason). KEYS: the current key first, then old ones accepted for verification only."""
    sig: Optional[Dict[str, Any]] = manifest.get("signature") if isinstance(manifest.get("signature"), dict) else None
    if not sig or not sig.get("value"):
        return False, "the manifest is not signed"
    if sig.get("alg") != ALG:
        return False, "signature algorithm %r is not %s" % (sig.get("alg"), ALG)
    usable = [k for k in keys if isinstance(k, str) and len(k.strip()) >= MIN_KEY_CHARS]
    if not usable:
        return False, "no manifest key is configured on the controller to verify it"
    body = canonical(manifest)
    for key in usable:
        mac = hmac.new(key.strip().encode("utf-8"), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(mac, str(sig.get("value"))):
            return True, "signed with key %s" % key_id(key)
    have = ", ".join(key_id(k) for k in usable)
    return False, ("the signature does not verify with the configured key(s) (signed with key id %s; this "
                   "controller has %s)" % (sig.get("key_id"), have))
