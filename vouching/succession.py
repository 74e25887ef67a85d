"""Key rotation (DESIGN.md §2): which keys are one org.

An org rotates its key with two `org` records, one in each key's chain. The old key's record names the new key
in `next` and is the old key's last: nothing it signs afterwards is accepted. The new key's first record (seq 1)
names the old key in `prior`. Only the two together link the keys: an org cannot hand its history to a key it
does not hold, and a key cannot take over an org that did not name it. As each record sits in its own key's
chain, which keys are linked does not depend on the order records arrive in.

Linked keys are one org, known by its first key (its identity; keys rotating in a cycle have none, and are known
by their least key): its vouches, evidence and reputation carry over, an equivocation by any of its keys flags them
all, and a later key may revoke an earlier key's vouches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .bodies import OrgBody
from .records import Record


@dataclass(frozen=True, slots=True)
class Link:
    """Two keys found to be one org: `successor` replaced `prior`. A link closing a `cycle` of keys joins no new
    key: it renames the org, from `successor` (its first key until then) to its least key. `org` is the org's
    identity right after this link (a record completing two links makes two steps; None in `links()`)."""

    prior: str
    successor: str
    cycle: bool = False
    org: str | None = field(default=None, compare=False)


class _Org:
    """Keys found to be one org: its first key, and all of them."""

    __slots__ = ("first", "keys")

    def __init__(self, key: str) -> None:
        self.first = key
        self.keys = {key}


class Succession:
    """The rotations and first records seen so far, and the links they make; feed it every accepted `org` record.
    `identity` is a dict lookup however long an org's chain of keys (a hostile org may make one as long as it
    likes): each link joins the smaller org's keys into the larger's."""

    def __init__(self) -> None:
        self._named_next: dict[str, str] = {}  # key -> the key its rotation record names
        self._named_prior: dict[str, str] = {}  # key -> the key its first record names
        self._successor: dict[str, str] = {}  # linked keys: old -> new
        self._orgs: dict[str, _Org] = {}  # linked keys -> their org

    def note(self, record: Record) -> list[Link]:
        """Take in an accepted record; the links it completes: none, or one, or two (a first record naming both its
        prior and its successor may complete both links at once)."""
        body = record.body
        if not isinstance(body, OrgBody):
            return []
        links = []
        if body.prior is not None:
            self._named_prior[record.iss] = body.prior
            links.append(self._link(body.prior, record.iss))
        if body.next is not None:
            self._named_next[record.iss] = body.next
            links.append(self._link(record.iss, body.next))
        return [link for link in links if link is not None]

    def retired(self, key: str) -> bool:
        """Whether `key` signed its rotation record (its chain is closed)."""
        return key in self._named_next

    def named_next(self, key: str) -> str | None:
        """The key `key`'s rotation record names as its successor, if it signed one."""
        return self._named_next.get(key)

    def named_prior(self, key: str) -> str | None:
        """The key `key`'s first record says it replaces (a claim until the prior key's rotation names it back)."""
        return self._named_prior.get(key)

    def identity(self, key: str) -> str:
        """The org `key` belongs to: its first key."""
        org = self._orgs.get(key)
        return key if org is None else org.first

    def keys(self, key: str) -> tuple[str, ...]:
        """Every key of `key`'s org, first to current (round a cycle once, from its least key)."""
        return self.later(self.identity(key))

    def earlier(self, key: str) -> tuple[str, ...]:
        """The keys of `key`'s org before `key`, newest first (walked to `key` only, not past it)."""
        keys = [self.identity(key)]
        while keys[-1] != key:
            keys.append(self._successor[keys[-1]])
        return tuple(reversed(keys[:-1]))

    def rotates_to(self, key: str, successor: str) -> bool:
        """Whether the rotation records held lead from `key` to `successor`, each signed by the key it retires and
        naming the next, whether or not the first records naming them back are held (the keys linked) yet."""
        seen = {key}
        while (key := self._named_next.get(key)) is not None and key not in seen:
            if key == successor:
                return True
            seen.add(key)
        return False

    def unlinked(self, key: str) -> bool:
        """Whether `key`'s org is not known yet: the first record of its first key names a prior key that has not
        (yet) named it back, or its keys rotate in a cycle and have no first. A key linked to a prior key that is
        itself unlinked is unlinked too: a key whose first record names both a prior and a successor must not
        hand on a claim that is still pending."""
        return self._named_prior.get(self.identity(key)) is not None

    def later(self, key: str) -> tuple[str, ...]:
        """`key` and the keys of its org after it, oldest first (in a cycle, round to its first key)."""
        keys, first = [key], self.identity(key)
        while (successor := self._successor.get(keys[-1])) is not None and successor != first:
            keys.append(successor)
        return tuple(keys)

    def links(self) -> list[Link]:
        return [Link(prior, successor) for prior, successor in self._successor.items()]

    def _link(self, prior: str, successor: str) -> Link | None:
        if self._named_next.get(prior) != successor or self._named_prior.get(successor) != prior:
            return None
        if self._successor.get(prior) == successor:
            return None  # already linked
        self._successor[prior] = successor
        if self.identity(prior) == self.identity(successor):
            return self._close_cycle(prior, successor)
        first = self.identity(prior)
        small, large = sorted((self._org(prior), self._org(successor)), key=lambda org: len(org.keys))
        large.keys |= small.keys
        for key in small.keys:
            self._orgs[key] = large
        large.first = first
        return Link(prior, successor, org=first)

    def _close_cycle(self, prior: str, successor: str) -> Link | None:
        """A rotation back into the org's first key closes a cycle of keys, each rotating to the next in its first
        record (only then can they all be accepted), and none signing anything more. Which link closed it depends on
        the order records arrived in, so the org is known by its least key instead: the link, if that changes it."""
        org = self._orgs[prior]
        least = min(org.keys)
        if least == org.first:
            return None
        org.first = least
        return Link(prior, successor, cycle=True, org=least)

    def _org(self, key: str) -> _Org:
        org = self._orgs.get(key)
        if org is None:
            org = self._orgs[key] = _Org(key)
        return org
