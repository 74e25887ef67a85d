"""The `vouchnet` commands that talk to a running node over its local API; each module registers its own."""
