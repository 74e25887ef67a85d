"""Operators' experiments: local multi-node testnets, attack scenarios, and the in-process trust simulator."""
