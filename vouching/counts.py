"""Counts in what the commands and the score explanations print, read right for one: "1 node", "2 nodes", "0 nodes"."""


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, in its plural (`plural`, else noun + "s") unless n is 1."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
