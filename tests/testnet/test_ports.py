"""A testnet's ports: outside the kernel's ephemeral range (where any outgoing connection may take one while the
testnet is stopped), distinct, free, and spread at random."""

import random
import socket

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from testnet.ports import DYNAMIC_PORTS, FIRST_PORT, PortError, bindable, choose_ports, ephemeral_range


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
