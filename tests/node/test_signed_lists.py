"""The status lists as the node signs them (node.signed_lists): once per change of their revocations, or
LIST_REUSE_S."""

from collections.abc import Awaitable, Callable

from nacl.signing import SigningKey

from node import signed_lists
from node.signed_lists import SignedLists

URL = "https://vouchnet.example.org/v1/credentials/status/0"


async def test_a_list_signed_with_more_revocations_than_an_ask_saw_is_served_to_it(monkeypatch):
    """Revocations are never undone: an ask that counted one revocation before a second was signed in (it waited
    for that signing) takes the list of two; one that counts three signs anew."""
    signed = []
    monkeypatch.setattr(signed_lists, "status_list_credential", lambda key, url, revoked, *, now: (
        signed.append(list(revoked)), f"token {len(signed)}")[1])
    lists = SignedLists(SigningKey.generate(), lambda: 1_000_000.0)

    def positions(*revoked: int) -> Callable[[], Awaitable[list[int]]]:
        async def read() -> list[int]:
            return list(revoked)
        return read

    assert await lists.token(URL, 2, positions(3, 5)) == "token 1"
    assert await lists.token(URL, 1, positions(3)) == "token 1"
    assert await lists.token(URL, 3, positions(3, 5, 8)) == "token 2"
    assert signed == [[3, 5], [3, 5, 8]]
