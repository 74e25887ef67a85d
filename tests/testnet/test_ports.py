"""A testnet's ports: outside the kernel's ephemeral range (where any outgoing connection may take one while the
testnet is stopped), distinct, free, and spread at random."""

import random
import re
import socket

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from testnet.ports import (DYNAMIC_PORTS, FIRST_PORT, PortError, PortRange, bindable, choose_ports, ephemeral_range,
                           parse_port_range)


def test_the_ports_chosen_lie_outside_the_ephemeral_range_the_kernel_reports():
    low, high = ephemeral_range()
    ports = choose_ports(60)
    assert len(set(ports)) == 60
    assert all(FIRST_PORT <= port < low or high < port <= 65535 for port in ports), ports


@settings(max_examples=50)
@given(low=st.integers(FIRST_PORT - 100, 65535), width=st.integers(0, 65535), count=st.integers(1, 8),
       seed=st.integers())
def test_the_ports_chosen_lie_outside_any_ephemeral_range_given(low, width, count, seed):
    high = min(low + width, 65535)
    room = max(0, low - FIRST_PORT) + (65535 - high)
    if room < count:
        with pytest.raises(PortError, match=f"the ephemeral port range {low}-{high} leaves {room} ports from 10000 up"):
            choose_ports(count, ephemeral=(low, high), rng=random.Random(seed))
        return
    assume(room >= count + 50)  # (a few ports next to the range's ends may be held on this machine)
    ports = choose_ports(count, ephemeral=(low, high), rng=random.Random(seed))
    assert len(set(ports)) == count
    assert all(FIRST_PORT <= port < low or high < port <= 65535 for port in ports), ports


def test_a_port_another_process_holds_or_the_testnet_gave_is_not_chosen():
    held, given_already, free = choose_ports(3)
    everything_else = set(range(65536)) - {held, given_already, free}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", held))
        listener.listen()
        assert not bindable(held)
        assert choose_ports(1, avoid=everything_else | {given_already}) == [free]
        with pytest.raises(PortError, match="found 0 free ports of 1 drawn outside the ephemeral range"):
            choose_ports(1, avoid=everything_else | {given_already, free})


def test_two_testnets_draw_different_ports():
    """Drawn at random (not from a fixed start, nor from the testnet's seed): two testnets in different directories
    made at once seldom meet."""
    first, second = choose_ports(20), choose_ports(20)
    assert len(set(first) & set(second)) < 5


def test_the_ephemeral_range_is_read_from_the_kernel_s_file_or_is_the_dynamic_ports_without_one(tmp_path):
    path = tmp_path / "ip_local_port_range"
    path.write_text("20000\t30000\n")
    assert ephemeral_range(path) == (20000, 30000)
    assert ephemeral_range(tmp_path / "absent") == DYNAMIC_PORTS == (49152, 65535)
    path.write_text("30000 20000\n")
    with pytest.raises(PortError, match=r"not an ephemeral port range \(two ports, first to last\): '30000 20000'"):
        ephemeral_range(path)


@settings(max_examples=30)
@given(first=st.integers(1024, 65535 - 300), width=st.integers(20, 300), count=st.integers(1, 8), seed=st.integers())
def test_a_testnet_confined_to_a_range_gets_its_ports_from_that_range_the_ephemeral_range_included(first, width,
                                                                                                 count, seed):
    """`up --ports FIRST-LAST`: an operator's firewall (or another testnet's range) leaves the testnet a range, which
    may lie inside the ephemeral range (the Linux default, 32768-60999, holds the usual 48000s)."""
    within = PortRange(first, first + width - 1)
    ports = choose_ports(count, within=within, rng=random.Random(seed))
    assert len(set(ports)) == count and all(first <= port < first + width for port in ports), ports


def test_a_range_of_too_few_ports_or_too_few_free_ones_is_refused_saying_which():
    (low,) = choose_ports(1, within=PortRange(FIRST_PORT, 14999))
    (high,) = choose_ports(1, within=PortRange(15001, 20000))
    with pytest.raises(PortError, match=f"the testnet's port range {low}-{low} holds 1 port, fewer than the 2 needed"):
        choose_ports(2, within=PortRange(low, low))
    with pytest.raises(PortError, match=rf"range {low}-{high} holds {high - low + 1} ports, {high - low - 1} of them "
                                        "the testnet's nodes' already, fewer than the 3 needed"):
        choose_ports(3, within=PortRange(low, high), avoid=range(low + 1, high))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", low))
        listener.listen()
        assert choose_ports(1, within=PortRange(low, high), avoid=range(low + 1, high)) == [high]
        with pytest.raises(PortError, match=rf"the testnet's port range {low}-{high}: 1 of the 2 ports it holds "
                                            r"besides its nodes' own are free on 127.0.0.1 now, fewer than the 2 "
                                            r"needed \(other processes hold the rest\)"):
            choose_ports(2, within=PortRange(low, high), avoid=range(low + 1, high))


@pytest.mark.parametrize("text", ["48000", "48000-", "-48000", "48999-48000", "0-10", "48000-65536", "a-b", "1e3-2e3",
                                  "48000:48999", ""])
def test_a_port_range_that_is_not_one_is_refused_naming_the_form(text):
    with pytest.raises(PortError, match=r"expected a port range FIRST-LAST \(ports 1 to 65535, the first not past "
                                        rf"the last, as 48000-48999\), got {re.escape(repr(text))}"):
        parse_port_range(text)


def test_a_port_range_reads_as_written():
    assert parse_port_range("48000-48999") == PortRange(48000, 48999)
    assert parse_port_range("5000-5000").size == 1 and str(PortRange(5000, 5001)) == "5000-5001"
