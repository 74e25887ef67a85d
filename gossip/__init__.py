"""Node-to-node: the libp2p host, gossip topics and validation, catch-up sync, witnessing, peers."""
