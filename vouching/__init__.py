"""Records and trust semantics: identities, signed records, the trust graph, scoring and policy; and the log limit
per call site that every layer above uses (log_limit).

Pure: no network, no trio, no disk (DESIGN.md §1).

Each name below is imported from its module when it is first asked for (PEP 562), so that importing one module of
the package (`vouching.base58`, `vouching.policy`: every `vouchnet` command does) does not import them all.
"""

from __future__ import annotations

from .lazy import lazy_names

# The package's names, by the module that holds each.
__all__, __getattr__ = lazy_names(__name__, {
    ".bodies": ("Body", "Counts", "DigestBody", "EquivocationBody", "OrgBody", "RevokeBody", "VouchBody",
                "digest_body", "equivocation_body", "org_body", "revoke_body", "vouch_body"),
    ".chain": ("check_follows",),
    ".equivocation": ("proves_equivocation", "record_equivocation_body"),
    ".identity": ("InvalidDid", "did_key", "public_key_from_did"),
    ".records": ("MAX_RECORD_SIZE", "Record", "SignatureCheck", "equivocation_offender", "failed_signatures",
                 "issue_digests", "issue_record", "load_record", "load_stored", "record_id", "sign_record",
                 "verify_record", "verify_record_deferred"),
    ".schema": ("InvalidRecord",),
})
