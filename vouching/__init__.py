"""Records and trust semantics: identities, signed records, the trust graph, scoring and policy.

Pure: no network, no trio, no disk (DESIGN.md §1).
"""
