"""Records and trust semantics: identities, signed records, the trust graph, scoring and policy.

Pure: no network, no trio, no disk (DESIGN.md §1).
"""

from vouching.identity import InvalidDid, did_key, public_key_from_did

__all__ = ["InvalidDid", "did_key", "public_key_from_did"]
