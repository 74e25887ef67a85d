"""The in-process trust simulation (issue 3, items 4 and 5): synthetic networks of honest, colluding and Sybil
orgs, and the Bitcoin OTC graph, run through the real `vouching` trust engine to measure attack resilience."""
