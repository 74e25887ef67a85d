"""gossip.listen_check: the one check that a port can be listened on, which gossip.host makes before py-libp2p listens
and the testnet makes when it gives or moves ports, importable without py-libp2p."""

import errno
import socket
import subprocess
import sys

import pytest

from gossip.listen_check import bind_error


@pytest.mark.parametrize(("family", "ip"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_a_port_another_socket_listens_on_is_refused_with_its_error_and_a_free_one_is_not(family, ip):
    with socket.socket(family) as held:
        try:
            held.bind((ip, 0))
        except OSError:
            pytest.skip(f"no {ip} on this machine")
        held.listen()
        port = held.getsockname()[1]
        assert bind_error(ip, port).errno == errno.EADDRINUSE
    assert bind_error(ip, port) is None


def test_a_port_whose_last_connection_waits_in_time_wait_is_free():
    """As trio binds the node's listeners (SO_REUSEADDR): a node restarted at once finds its port free."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as trio's, whose accepted sockets inherit it
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = listener.accept()
            accepted.close()  # the side that closes first waits in TIME_WAIT
    assert bind_error("127.0.0.1", port) is None


def test_the_testnet_s_port_checks_import_no_libp2p():
    """`vouchnet testnet` imports py-libp2p (a second) only where it needs a PeerID, not to check its ports."""
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, testnet.cli, testnet.cluster, testnet.ports; "
                               "print(sorted({m.split('.')[0] for m in sys.modules} & {'libp2p', 'multiaddr'}))"],
        capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"
