"""One error type for the model; each front end maps its kind to ONTAP's REST or ZAPI codes."""

from __future__ import annotations

# kind -> (HTTP status, REST code string, ZAPI errno). Codes from reference tables A.3 / B.4;
# the few marked "sim" are this simulator's choice where the reference has no source.
ERROR_TABLE: dict[str, tuple[int, str, str]] = {
    "not_found": (404, "4", "15661"),
    "volume_not_found": (404, "917927", "13040"),
    "snapshot_not_found": (404, "4", "13021"),
    "svm_not_found": (404, "2621462", "15698"),
    "lun_not_found": (404, "5374875", "15661"),
    "file_not_found": (404, "4", "13113"),
    "exists": (409, "1", "13020"),
    "snapshot_exists": (409, "1", "13020"),
    "cg_snapshot_exists": (409, "53411921", "13020"),
    "busy": (409, "1638555", "13024"),
    "in_use": (409, "8", "13001"),
    "newer_snapshots": (409, "8", "13038"),  # sim: CLI wording, code 8 "resource in use"
    "restore_refused": (409, "8", "13038"),
    "invalid": (400, "262185", "13115"),
    "missing": (400, "262177", "13006"),
    "unexpected_argument": (400, "262179", "13115"),
    "invalid_field": (400, "262197", "13115"),
    "not_supported": (405, "3", "13005"),
    "snapshot_not_allowed": (405, "3", "13023"),
    "permission": (403, "6", "13003"),
    "transfer_failed": (400, "13303844", "13001"),
    "restore_failed": (400, "13303845", "13001"),  # snapmirror restore failed
    # sim: the SnapMirror family's codes for a source SVM that is not peered, and for a transfer asked of the
    # source cluster (a relationship and its transfers belong to the destination cluster)
    "svm_not_peered": (400, "13303845", "13001"),
    "not_destination": (400, "13303844", "13001"),
    "cg_failed": (400, "53411842", "13701"),  # sim code for a CG operation that failed
    "vserver_missing": (400, "2", "13001"),
    "internal": (500, "65552", "13001"),
}


class SimError(Exception):
    """A failed operation: KIND picks the codes, MESSAGE is ONTAP-like text, TARGET the field."""

    def __init__(self, kind: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        if kind not in ERROR_TABLE:
            raise ValueError(f"unknown error kind {kind}")
        self.kind = kind
        self.message = message
        self.target = target

    @property
    def http_status(self) -> int:
        return ERROR_TABLE[self.kind][0]

    @property
    def rest_code(self) -> str:
        return ERROR_TABLE[self.kind][1]

    @property
    def errno(self) -> str:
        return ERROR_TABLE[self.kind][2]

    def rest_body(self) -> dict:
        err: dict = {"message": self.message, "code": self.rest_code}
        if self.target:
            err["target"] = self.target
        return {"error": err}
