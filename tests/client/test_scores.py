"""TrustClient and AsyncTrustClient read an agent's score as the node sees it: explained by default, the score
alone when the explanation is declined, with a signed statement when asked."""

import pytest

from node.client import AsyncTrustClient, NodeApiError, TrustClient

from .running_node import on_asyncio


def test_a_score_is_explained_unless_declined(running):
    agent, _ = running.new_agent(trusted=True)
    with TrustClient(running.url) as client:
        explained = client.score(agent)
        bare = client.score(agent, explain=False)
        signed = client.score(agent, statement=True, explain=False)
    assert (explained["tier"], bare["tier"]) == ("trusted", "trusted") and bare["score"] == explained["score"]
    assert explained["explanation"]["orgs"] and "explanation" not in bare and "statement" not in bare
    assert "explanation" not in signed and signed["statement"].count(".") == 2  # a compact JWT
    assert explained["known"] is bare["known"] is True


def test_a_score_says_whether_the_node_knows_the_agent_or_refuses_an_org_s_did(running):
    stranger, _ = running.new_agent(trusted=False)
    with TrustClient(running.url) as client:
        assert client.score(stranger, explain=False)["known"] is False
        with pytest.raises(NodeApiError) as refused:
            client.score(running.node.replica.did)
    assert (refused.value.status, refused.value.code) == (409, "not_an_agent")


@on_asyncio
async def test_the_async_client_reads_scores_the_same_way(running):
    agent, _ = running.new_agent(trusted=False)
    async with AsyncTrustClient(running.url) as client:
        explained = await client.score(agent)
        bare = await client.score(agent, explain=False)
    assert explained["tier"] == bare["tier"] == "untrusted" and bare["score"] == explained["score"]
    assert "explanation" in explained and "explanation" not in bare
    assert explained["known"] is bare["known"] is False
