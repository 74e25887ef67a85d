"""TrustClient and AsyncTrustClient read an agent's score as the node sees it: explained by default, the score
alone when the explanation is declined, with a signed statement when asked."""

from node.client import AsyncTrustClient, TrustClient

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


@on_asyncio
async def test_the_async_client_reads_scores_the_same_way(running):
    agent, _ = running.new_agent(trusted=False)
    async with AsyncTrustClient(running.url) as client:
        explained = await client.score(agent)
        bare = await client.score(agent, explain=False)
    assert explained["tier"] == bare["tier"] == "untrusted" and bare["score"] == explained["score"]
    assert "explanation" in explained and "explanation" not in bare
