"""Records and trust semantics: identities, signed records, the trust graph, scoring and policy.

Pure: no network, no trio, no disk (DESIGN.md §1).
"""

from vouching.bodies import (
    Body,
    Counts,
    DigestBody,
    EquivocationBody,
    OrgBody,
    RevokeBody,
    VouchBody,
    digest_body,
    equivocation_body,
    org_body,
    revoke_body,
    vouch_body,
)
from vouching.chain import check_follows
from vouching.equivocation import proves_equivocation, record_equivocation_body
from vouching.identity import InvalidDid, did_key, public_key_from_did
from vouching.records import (
    MAX_RECORD_SIZE,
    Record,
    SignatureCheck,
    equivocation_offender,
    failed_signatures,
    issue_digests,
    issue_record,
    load_record,
    load_stored,
    record_id,
    sign_record,
    verify_record,
    verify_record_deferred,
)
from vouching.schema import InvalidRecord

__all__ = [
    "MAX_RECORD_SIZE",
    "Body",
    "Counts",
    "DigestBody",
    "EquivocationBody",
    "InvalidDid",
    "InvalidRecord",
    "OrgBody",
    "Record",
    "RevokeBody",
    "SignatureCheck",
    "VouchBody",
    "check_follows",
    "did_key",
    "digest_body",
    "equivocation_body",
    "equivocation_offender",
    "failed_signatures",
    "issue_digests",
    "issue_record",
    "load_record",
    "load_stored",
    "org_body",
    "proves_equivocation",
    "public_key_from_did",
    "record_equivocation_body",
    "record_id",
    "revoke_body",
    "sign_record",
    "verify_record",
    "verify_record_deferred",
    "vouch_body",
]
