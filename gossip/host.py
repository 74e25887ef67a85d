"""The libp2p host: TCP + Noise + yamux, GossipSub v1.1/v1.2 with StrictSign, keyed by the org's Ed25519 key.

The only module in vouchnet that imports py-libp2p (pinned to 0.8.x). Specs: libp2p connections
(Noise XX, yamux, multistream-select), PeerID (identity multihash), GossipSub v1.1/v1.2, length-prefixed
frames (see gossip.frames). Everything here is configuration, wrapping and subclassing, plus fixes inside the
library, each guarded by the names and parameters (or type) it replaces, so a py-libp2p that changed them is left as
it is: its modules' functions and classes (quirks 17, 21, 24, 29, 35, 40, 45, 63 and 65) and each host's swarm's
(31, 32 and 34). Every protocol on the wire stays as its spec says.

py-libp2p 0.8.1 sharp edges and how this module handles each. Every reproduction below was run on this
machine; they use a plain py-libp2p node built as its examples do:

    host = new_host(key_pair=create_new_key_pair(os.urandom(32)))
    async with host.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        gs = GossipSub([PROTOCOL_ID_V12, PROTOCOL_ID_V11], 6, 4, 12, heartbeat_interval=1)
        ps = Pubsub(host, gs)
        async with background_trio_service(ps), background_trio_service(gs): ...

1. Spam protection silently forwards at most 10 messages/s per topic, our own publishes included
   (GossipSub._check_spam_protection, max_messages_per_topic_per_second=10.0). Repro: two connected nodes,
   publish 50 messages at 50/s -> the peer receives 12. Handled: spam_protection_enabled=False. Rate
   limits belong to the gossip layer's validator, which tells a flooding origin (REJECT: its score drops) from a
   peer relaying part of a flood (IGNORE, quirk 28).
2. The per-peer outbound queue is fixed at 32 RPCs (rpc_queue.OutBoundQueueSize) and RpcQueue.push drops
   silently when full. See 8 for the repro. Handled for our own messages: publish() waits for queue space
   (8). A message this node relays can still be dropped for a peer whose queue is full, as in go-libp2p;
   the peer gets it from another mesh member, through IHAVE/IWANT, or through vouchnet's sync.
3. Adaptive gossip (on by default) sets the heartbeat to 30-60 s once its "network health" is below 0.4,
   which a small healthy mesh is (health counts mesh size against D). Repro: three fully connected nodes,
   heartbeat_interval=1; at t=30 s gs.heartbeat_interval becomes 30 and heartbeats stop for 30 s (health
   0.33). Handled: adaptive_gossip_enabled=False. The py-only "eclipse protection" mesh heuristics are
   turned off too (not in the v1.1 spec, which relies on scoring).
4. A synchronous topic validator that raises crashes the receiving node's Pubsub service; the exception
   escapes host.run(), so any remote peer can crash us with one message. Repro: peer B registers
   `def v(peer, msg): raise ValueError` for topic t; peer A publishes to t -> B's `async with` exits with
   ExceptionGroup([ValueError]). Handled: subscribe() wraps the validator; an exception is logged and
   counted and the message is rejected (never raised into py-libp2p).
5. Leaving host.run() without host.close() leaves the TCP listener accepting: the listener runs in a trio
   *system* task, and Swarm.run's cleanup awaits listener.close() inside an already-cancelled scope.
   Repro: `async with host.run([...tcp/0]): port = ...` then `trio.open_tcp_stream("127.0.0.1", port)`
   succeeds. Handled: open_host() calls host.close() inside a shielded, time-bounded scope before leaving
   run(); the tests check that the port refuses connections and no task outlives open_host(). It closes the listeners
   first: host.close() closes them after every connection, and a peer that reads nothing, holding the write of this
   host's GO_AWAY (25) for all of close_timeout, left the port accepting after open_host() returned (repro: see 61's,
   with close_timeout 1 s).
6. Every dial costs ~250 ms: Swarm.dial_peer waits its happy-eyeballs delay even after the first address
   connected unless max_connections_per_peer is reached. Repro: host.connect() to a live loopback peer takes
   252 ms; with ConnectionConfig(max_connections_per_peer=1) it takes 8-11 ms. Handled: that setting.
   A peer whose dial failed is then refused for 60 s (Swarm._negative_peer_cache), even once it is back.
   Repro: dial a stopped peer (fails), restart it on the same address, dial again -> "recently failed all
   addresses (negative cache)". Handled: connect() lifts the block first (Swarm.unblock_peer), so the
   node's reconnect-with-backoff owns retry timing; the swarm's own retries (RetryConfig, 3) are set to 0
   and its auto-connector, which redials every peer in the peerstore and feeds the negative cache, is
   stopped.
7. `import libp2p` sets the `libp2p` logger to propagate=False with no handlers, so its records bypass the
   application's logging (they reach stderr through logging.lastResort). Repro: logging.basicConfig(
   stream=buf); import libp2p; logging.getLogger("libp2p.x").warning("w") -> "w" on stderr, not in buf.
   Handled: open_host() sets propagate=True and the level from HostConfig (unless LIBP2P_DEBUG is set,
   which asks for py-libp2p's own log setup).
8. A burst of local publish() calls silently loses messages: publish() never yields, each one queues the
   message and, on /meshsub/1.2.0, an IDONTWANT for it into the same 32-slot queue, and still returns.
   Repro (spam protection off, receiver draining concurrently): 1,000 publishes -> 16 received on
   /meshsub/1.2.0, 32 on /meshsub/1.1.0. Handled: publish() waits until every peer's queue is at most
   half full (woken by the sending loop, no polling); a peer whose queue stays full for
   HostConfig.publish_stall_timeout is disconnected (it catches up through sync) so that one stalled or
   hostile peer cannot block publishing.
9. A custom msg_id_constructor is only partly honoured: Pubsub's seen-cache uses it, but MessageCache (and
   so IHAVE/IWANT) keys messages by from||seqno. Repro: Pubsub(..., msg_id_constructor=sha256-of-data);
   publish b"hello" -> seen_messages has the sha256 id, gs.mcache.msgs has only from||seqno keys.
   Handled: the default from||seqno id (the spec default); vouchnet deduplicates by record id itself.
10. A default new_host() accepts plaintext peers (it offers /noise, /tls/1.0.0, /secio/1.0.0 and
   /plaintext/2.0.0). Repro: a dialer built with sec_opt={PLAINTEXT: InsecureTransport(kp)} connects and
   gets an InsecureSession. Handled: only /noise is offered, and only yamux (js-libp2p and go-libp2p speak
   both, so mplex is not needed for interop).
Found while reproducing the above (not in the issue):
11. A remote message whose `from` is not an identity-multihash PeerID and whose `key` is garbage makes
   pubsub's signature_validator() raise (DecodeError), crashing the receiver's Pubsub service. Repro: open
   /meshsub/1.1.0 to a subscribed peer and write RPC(publish=[Message(from_id=sha256-multihash,
   key=b"garbage", signature=b"s", topicIDs=["t"], ...)]). Handled: _Pubsub.push_msg catches any exception
   from a remote message, counts it as hostile input and as an invalid message against the forwarder.
12. Garbage bytes on a /meshsub stream raise protobuf's DecodeError, which Pubsub.stream_handler does not
   catch; it escapes into the connection task and crashes the Swarm. Repro: open /meshsub/1.1.0 and write
   a varint-prefixed b"\\xff\\xff\\xff\\xff garbage". Any stream handler that raises does the same, so
   _Pubsub.stream_handler and every handler given to set_stream_handler() are wrapped: an exception is
   logged and the stream reset.
13. Pubsub.notify_subscriptions hands messages to subscribers through a 32-slot channel with send_nowait
   and drops (with a warning) when it is full, so a subscriber that is briefly slower than a burst loses
   messages. Handled: _Pubsub.notify_subscriptions delivers into a channel of HostConfig.receive_buffer
   messages; gossip cannot be back-pressured upstream, so an overflow is counted (Host.stats()) and logged.
14. A yamux stream reset by the peer reads as a clean end of stream (b""): the RST finalizes the stream and
   read_stream() then reports "Stream closed" as EOF. Repro: a handler that resets its stream; the opener's
   stream.read() returns b"" instead of raising. Handled: Stream checks the yamux stream's reset_received
   flag at end of stream and raises StreamError, so a server aborting mid-protocol is never mistaken for a
   completed answer.
15. The TCP listener sets SO_REUSEPORT (for hole punching), so a second node started on a port that a node
   already listens on starts too, and the kernel splits inbound connections between them. Repro: two
   open_host() on the same fixed port without the check below -> both run. Handled: open_host() first
   binds each fixed port without SO_REUSEPORT and refuses a port in use with HostError.
16. host.connect(PeerInfo(peer, [addr])) may dial a different address than `addr`: it adds `addr` to the
   peerstore, and dial_peer picks one address per transport from everything the peerstore holds for the
   peer, the oldest first. Repro: connect to /ip4/127.0.0.1/tcp/<B's port>/p2p/<X> (fails: wrong key), then
   to /ip4/127.0.0.1/tcp/1/p2p/<X> -> the error is again the handshake failure at B's port, not "connection
   refused". Handled: connect() clears the peer's addresses before dialling.
17. libp2p.io.utils.read_exactly() gives up after 100 partial reads although the bytes are still coming, and
   the Noise transport reads every encrypted frame (up to 64 KiB) with it. TCP can hand a busy receiver such
   a frame in small pieces (its socket buffer is full and the sender refills it bit by bit); the read then
   fails half-way with part of the frame consumed, and yamux, which treats an incomplete DATA read as a
   closed stream and carries on, reads the rest of the connection out of step. Repro: read_exactly(reader,
   65535) from a reader that returns 600 bytes per read -> IncompleteReadError "expected 65535 bytes but
   received 60600". Handled (the first patch of library internals, guarded by the signature it replaces, no
   wire change): the msgio module that Noise uses reads until it has the bytes or the connection ends.
18. Writes to one yamux stream are not atomic: YamuxStream.write() sends a large buffer as several frames
   and takes its lock per frame, so two tasks writing at once interleave their bytes. Pubsub has such
   writers (the per-peer sending loop, flush_pending_messages() and send_recent_messages() all call
   write_msg() on the same stream), so an RPC larger than one 64 KiB frame can arrive spliced with another
   and fail to parse. Repro: two tasks each write twenty 100 KB frames to one stream -> the reader sees
   mixed frames. Handled: _Pubsub.write_msg takes a per-stream lock, and Stream.write does the same.
Seen but not isolated: with 64 KiB messages among 5 processes on a loaded 2-CPU machine, connections died
with "Failed authentication of message" (a Noise frame out of step) in 2 of 4 benchmark runs before the
fixes for 17 and 18, and in none of 9 runs after. A Noise frame whose send is cancelled half-way would do
the same; py-libp2p does not shield its writes. The node's reconnect and sync repair a dropped connection.
19. ConnectionConfig(max_connections=20) raises "Max connections should be >= high_watermark": its watermarks
   keep their defaults (300/100/50) whatever the limit. Repro: ConnectionConfig(max_connections=20). Handled:
   the watermarks are lowered with the limit (_connection_config).
20. A heartbeat that prunes a mesh down to D sends PRUNE without backing off from the pruned peer (GossipSub
   v1.1 says the pruning side backs off too; go-libp2p does), and neither does emit_prune() when it refuses a
   GRAFT. The next heartbeat may re-graft that peer, which has just been told to back off and so answers
   with a PRUNE and a "GRAFT flood" penalty (10 points; -80 graylists): honest py-libp2p nodes penalise
   each other and drop each other's messages. Repro: 8 fully connected hosts, D=2, D_lo=2, D_hi=3,
   heartbeat 0.2 s; after 8 s, 29 "GRAFT flood"/"ignoring request" warnings and 22 of 56 peer scores
   negative (2 warnings, no negative score, with the fix). Handled: _GossipSub adds the backoff for every
   peer it prunes (mesh_heartbeat, emit_prune); HostStats.mesh_prunes counts the heartbeat's prunes. Both
   ends of a PRUNE then back off, each from its own moment, seconds apart on a busy machine (the pruned peer
   counts from the PRUNE's arrival): whoever's backoff ended first re-grafted and was refused by the other
   ("GRAFT: ignoring request ... back off"), which extends both; 227 such refusals in one run of
   benchmarks/gossip.py, with 0-8 s of the refuser's backoff left. So, as go-libp2p does, a backoff lasts
   BACKOFF_SLACK_S longer when choosing peers to graft than when refusing a GRAFT (_check_back_off).
21. A yamux reader sends a WINDOW_UPDATE for every read that consumes bytes (YamuxStream.
   _auto_tune_and_send_window_update's "partial slack" and "release on read" branches), where go-yamux waits
   until half the window is owed; pubsub reads each RPC in several small reads (varint, then body), so every
   received RPC costs several encrypted frames and socket writes back. Repro: 3 hosts, 3,000 gossip messages
   of 2 KB -> 86,900 WINDOW_UPDATEs and 9.9 ms of CPU per message; with the fix 114-234 and 6.3 ms (200 KB
   messages: 8,800 -> 330, 18.8 -> 13-14 ms, and faster). Handled (a second patch of library internals,
   version-guarded by the signature it replaces; the wire protocol allows any credit schedule):
   _fix_window_updates() credits the window as go-yamux does, keeping py-libp2p's window auto-tuning.
22. Opportunistic grafting runs on every heartbeat, not every 60 as GossipSub v1.1 says, and grafts 2 peers
   scoring at least half the mesh's median, where the spec grafts only when that median is below a threshold,
   and only peers scoring above it. With scores that are all 0 (honest peers; vouchnet's scoring only
   penalises), every node grafts 2 more peers per topic each second until its mesh passes D_hi, then prunes
   it back to D: constant GRAFT/PRUNE traffic, and with backoffs honoured (quirk 20) the pruned peers pile up
   in backoff until a mesh cannot be refilled. Repro: 20 hosts, every pair connected, default D (6, 4, 12):
   host 0's mesh, second by second, 10, 9, 4, 2, then 1 for good; 148 prunes in 20 s. With the fix: 9 every
   second, 36 prunes (all while the meshes formed). Handled:
   _GossipSub._perform_opportunistic_grafting as the spec has it (every OPPORTUNISTIC_GRAFT_TICKS heartbeats,
   median below OPPORTUNISTIC_GRAFT_THRESHOLD = 0, i.e. when the mesh holds penalised peers).
23. Routine failures that the caller is told of anyway are logged at ERROR: BasicHost.new_stream logs seven lines
   ("Failed to open stream to peer ...") before raising StreamFailure, for a peer answering "na" to a protocol
   it does not serve as for a timeout; TCP.dial logs "Failed to open TCP stream" before raising for every
   refused dial; Swarm logs "failed to upgrade security" for a dial that reached the wrong key, and
   MultiselectClient "handshake: read failed" for a peer that hung up mid-negotiation. A connection that
   arrives while a host stops draws a WARNING with a traceback ("[ADDCONN_FAIL] ... LifecycleError"). A stream
   the peer opens as this host closes the connection draws "Error in handle_incoming for peer X:
   ClosedResourceError" from Yamux.handle_incoming: it ACKed the stream, then handed it on through the channel
   that Yamux.close closed meanwhile (the stream is closed with the connection; nobody was told of it yet). A peer
   that resets the connection (its host closed it, data unread) as this host writes an ACK or a ping's answer, or
   reads a frame's body, draws "Error in handle_incoming for peer X: ConnectionClosedError: TCP connection reset by
   remote peer" from the same place (the connection ends, its peer told of as disconnected). A peer
   that speaks only GossipSub (tests/interop's js-libp2p peer) drew about three such records a second from our
   sync and cosigning attempts; a stopped 20-node network, hundreds. Repro: two hosts, a.open_stream(b, "/x/1")
   where b serves no /x/1; a.connect() to a closed port; stop 20 connected nodes at once (dozens of each of the
   last two); b opens a stream on its connection to a as a disconnects b, a's ACK's write held until the close.
   Handled: a filter on those loggers makes these records DEBUG (the caller reports the failure in its own terms;
   of a stream lost with its connection, the peer, whose open of it fails), and Host.open_stream raises
   ProtocolNotSupported, remembering the refusal until the peer disconnects, so asking again fails at once and
   services can pass the peer over (Host.refused). A host listens
   before its owner's services set their handlers, so it is told the protocols they will serve
   (HostConfig.served_protocols): a stream of one that comes first waits for its handler, not refused, and is reset
   if none is set within early_stream_wait, or as soon as its connection closes or its peer is blocked; one the peer
   reset as it waited (its read timed out, say) is not served (node.daemon).
24. Every pubsub RPC carries the sender's signed peer record (`senderRecord`, a py-libp2p extension that other
   implementations ignore), and both ends redo all its work every time: env_to_send_in_RPC() rebuilds the
   host's addresses as multiaddrs to compare them with the cached record's, and maybe_consume_signed_record()
   parses the envelope, verifies its Ed25519 signature, decodes the addresses and rewrites the peerstore. A node
   of a 20-node network sends and receives about 30 RPCs per gossip message (mesh copies, IDONTWANTs, IHAVEs),
   and these two calls were about 15% of its CPU at low load. Repro: one host; env_to_send_in_RPC(host) takes
   61 us a call, and maybe_consume_signed_record(rpc, host, peer) for an RPC carrying that record 93 us, the
   same record every time. Handled (guarded by the functions' names and parameters, as 17 and 21): the record
   we send is reused until the host's own record changes or SENDER_RECORD_TTL_S passes, and a received record
   byte-identical to the last one accepted from the same peer within SENDER_RECORD_TTL_S is accepted without
   redoing it (anything else goes through the library's checks).
25. A host left under cancellation (a node's nursery cancelled: how every node stops) keeps its connections
   open: cancelling the swarm's tasks sets each SwarmConn's event_closed on the way out without closing its
   muxer, and SwarmConn.close(), which Swarm.close() calls, returns at once for a connection whose event is
   set. The sockets stay ESTABLISHED until the process exits, and a peer keeps the stopped host among its
   connected peers, its streams to it hanging until they time out (a node restarted in-process with the same
   key was unreachable from its peers that way). Repro: hosts A and B meshed on a topic, A's nursery cancelled:
   after Swarm.close() every connection of A has event_closed set and muxed_conn.is_closed False, and
   B.connected_peers() still lists A (without pubsub streams the connection does close). Handled: open_host() closes
   every muxer that is still open before it closes the host, and the socket of one whose close is cut off by
   close_timeout (a peer reading nothing holds its GO_AWAY's write: the socket was left open); a test checks that a
   peer sees a host stopped by cancellation disconnect.
26. A connection's disconnection can be notified well after the swarm dropped it, even after a new connection to
   the same peer was notified, so counting notifications per peer loses the reconnection: no event says the
   peer came back. Repro: hosts A and B connected, B stopped and started again on its port, A dials it: A's
   notifee gets connected(old), connected(new), disconnected(old), in that order, about one time in two.
   Handled: on a new connection, the peer's earlier connections that the swarm no longer holds count as gone
   (a disconnection event first if none is left); their late notification is ignored.
27. Pubsub caches each validator verdict by message id (from || seqno, not the data) for 300 s, but forgets seen
   ids after 120 s: an origin that sends other data under an id that passed once has it delivered and relayed
   with no validator run, so garbage reaches every subscriber that saw the first. Repro: A publishes b"valid"
   to B, whose validator accepts only that; 120 s later A sends b"forged" signed under the same seqno: B
   delivers it. Handled: _Pubsub.validate_msg keeps no verdicts (see 28); every message not seen is validated.
28. Validators can only say yes or no (GossipSub v1.1's IGNORE verdict is missing), and push_msg counts every no as
   an invalid message against the forwarder (scorer.on_invalid_message). So a peer that relays part of another org's
   burst beyond our rate limit is penalised like one that forged a signature, and with the burst of a busy origin an
   honest mesh cuts off its own relayers. Repro: hosts A - B - C in a line, C's validator returns False for every
   message after the second; A publishes 20 at once -> C rejects 6 from B, whose score is then -59, below the publish
   threshold, so C drops everything B relays from then on, honest messages included. Handled: validators return a
   Verdict (gossip.verdict; True and False still mean ACCEPT and REJECT), and _Pubsub.validate_msg, which push_msg
   awaits and whose ValidationError it turns into the penalty, is our own: it asks Host for the verdict, raises
   ValidationError for REJECT and the private _Ignored for IGNORE, which passes push_msg's handler and is caught in
   _Pubsub.push_msg: the message is then dropped before push_msg marks it seen, scores it or relays it. The verdict
   travels up the call stack, never through shared state, so no later message can be spared a penalty by mistake; the
   library's validate_msg ran py-libp2p's per-topic validator registry, which Host no longer uses (it holds the
   validators itself).
29. With StrictSign, a host verifies the signature of every message it publishes itself: Pubsub.publish signs the
   message and hands it to push_msg, which runs signature_validator on it as on a remote one. Ed25519 hashes the
   whole message, so the publisher of a 61 KB message spends about 0.4 ms proving its own signature valid. Repro:
   three hosts, 100 messages of 60 KB from one: 300 calls of Ed25519PublicKey.verify (1 at the publisher and 1 at
   each receiver per message), 0.4 ms per crypto_sign_open. Handled (patched by name and parameters, as
   24): _Pubsub.push_msg marks the message object it is given by its own publish() in a context variable of the
   publishing task, and the signature_validator that pubsub calls accepts that very object without verifying it;
   every message that arrived from a peer (another object, parsed from bytes) is verified as before. Same repro:
   200 calls. benchmarks/bare_gossipsub.py --size 61000 (5 processes), publisher's CPU per message at 10 and 20/s,
   runs alternated: 9.6, 8.6 and 10.3, 9.7 ms before; 7.9, 8.9 and 9.6, 8.5 ms after (the machine's noise is
   about as large as the 0.4 ms saved).
30. Pubsub's per-peer sending loop writes every queued RPC as its own length-prefixed frame, so each relayed
   message, IDONTWANT, IHAVE and GRAFT costs a yamux frame, a Noise frame and a socket write at the sender, and a
   varint read (byte by byte), a Noise frame, a protobuf parse and a peer-record check at the receiver: about 0.5
   ms of Python each, whatever the size. With 5 nodes every node handles about 15 RPCs per gossip message (up to
   4 copies in, 3 relays out, IDONTWANTs both ways), which is why bare GossipSub costs 7-10 ms per message per
   node at 512 bytes as at 61 KB. Repro: 5 hosts in one process, every pair connected, 200 messages of 60 KB from
   one, 10 ms apart: 7,193 RPC writes carrying 3,173 messages, 19.8 s of CPU. Handled (the wire format allows any
   number of messages and control entries in one RPC, as go-libp2p and js-libp2p send): _Pubsub.
   handle_sending_messages merges the RPCs already queued when it takes one, in queue order, as long as the
   result holds at most one message (a receiver runs an RPC's messages as concurrent tasks, so two in one RPC
   may be delivered out of order; tests saw it) and fits the queue's max_message_size. Same repro: 4,020 writes
   carrying 3,200 messages, 13.8 and 14.4 s of CPU (runs before: 17.6, 19.3, 19.8 s). Merging several messages
   per RPC went down to about 490 writes and 10-12 s, but reordered deliveries and, with RPCs of many Noise
   frames, left a peer of a stopping host reading a torn frame ("Failed authentication of message").
31. Each inbound connection holds one of the swarm's inbound slots (max_connections - min_connections of them)
   until the host stops, not until the connection closes: the task handling it waits for the swarm to finish, and
   frees its slot only then. A host thus accepts that many inbound connections in its life, and refuses every later
   one before the handshake. Repro: a host with max_connections=60 (10 slots); 13 hosts in turn connect to it and
   leave -> the 11th and later fail ("failed to negotiate the secure protocol"). A peer reconnecting 50 times used
   up a node's default slots, and no peer could dial in again. Handled (patched by name and parameters, as 24):
   the upgrade of an inbound connection returns once the connection shuts down, by raising, so the task ends and
   its slot is freed; the slots then bound the inbound connections open or in their handshake at once.
32. Pubsub, told of a new connection, opens its stream to the peer with host.new_stream(), which dials the peer if
   it is no longer connected, and retries: a peer that hangs up at once (one that blocked us, or a hostile one) is
   redialled behind the caller's back, whatever its backoff. Repro: host B blocks A; A connects to B once -> A's
   peer events show a new connection every 0.3 s at first (a node's PeerManager over a minute: 82 connections, 22
   of them its own dials; 7 and 7 with this fix). Handled (patched by name and parameters, as 24): the swarm
   dials only within connect(); elsewhere, asking it for a peer that is not connected raises SwarmException, which
   pubsub's retry takes as the peer gone.
33. The TCP transport resolves /dns, /dns4 and /dns6 addresses itself, with multiaddr's DNSResolver (dnspython: it
   asks the nameservers itself, so /etc/hosts and the system's name service are never read), and dials the
   unresolved address when a name gives nothing, which fails with "IP address not found in multiaddr", not the
   resolver's reason. Repro: TCP().dial(Multiaddr("/dns4/localhost/tcp/<a listening port>")) -> OpenConnectionError
   "Failed to connect to any resolved address", caused by "IP address not found in multiaddr". Handled: connect()
   resolves a name itself with trio's getaddrinfo, through the system's resolver as every other program on the
   machine (/dns4: A records, /dns6: AAAA, /dns: both), within the dial timeout, and dials the addresses it gives
   in its order until one connects: py-libp2p sees IP addresses only.
34. Nothing closes a connection for being idle: the swarm keeps every connection until the peer or the host closes
   it (the connection watermarks drive only the auto-connector, stopped for quirk 6), so an inbound connection
   holds one of the inbound slots (quirk 31) whatever it is used for. Keys are free to make, so peers that
   connect and then do nothing fill the slots, and every other peer is refused before its handshake. Repro: a
   host with max_connections=8 (4 inbound slots); 4 hosts connect to it and subscribe to nothing; a fifth's
   connect fails ("failed to negotiate the secure protocol") for as long as they stay. Handled as go-libp2p's
   connection manager (new connections have a grace period) and rust-libp2p's idle_connection_timeout do: an
   inbound connection whose peer, within HostConfig.idle_inbound_grace, neither subscribed to a gossip topic nor
   opened or was opened a stream of a protocol the host serves or dials (set_stream_handler, open_stream) is
   closed, unless the peer is protected (set_protected: the node's bootstrap peers and the orgs in its horizon).
   Pubsub's own stream does not count: every py-libp2p peer opens one as it connects. And when every inbound slot
   is taken, a new inbound connection takes the slot of the oldest such idle connection, grace or not, which is
   closed (the swarm's inbound limiter is replaced, guarded by its type, as 24): a flood of fresh keys must then
   open as many connections as there are slots in the moment an honest peer takes to subscribe (its first RPC) to
   push it out, where waiting for graces to end let it hold every slot with one handshake per slot per grace. The
   newcomer is not known yet when it is let in (the slot is taken before its handshake), so it may be a stranger
   too; protected peers and connections in use are never closed for it, and with none idle it is refused. A
   connection that was put to use, and an outbound one (this host's own dial), is never closed as idle.
35. A yamux peer may send past the receive window it was granted: handle_incoming logs "peer exceeded receive
   window" and buffers the bytes anyway, so a stream nobody reads (the host's own pubsub stream to a peer, which it
   only writes) holds whatever the peer sends, for as long as the connection lasts. Repro: hosts A and B
   connected; B writes raw DATA frames (its yamux connection's _write_frame) on the stream A's pubsub opened to it:
   64 MiB sent in 6 s, 64 MiB buffered at A, A's memory up by as much, the connection kept (and a warning per
   frame). go-yamux closes the connection (ErrRecvWindowExceeded). Handled (the muxer class is replaced where
   py-libp2p builds it, guarded by its name and type, as 24): _Yamux closes the connection, GO_AWAY protocol
   error first, when a DATA frame would take what the connection buffers past the windows of its streams (each
   stream's target window, which credit never exceeds, plus one initial window for a stream being opened or just
   closed; an honest frame is at most 64 KiB in go-, js- and py-libp2p); the peer is counted in
   HostStats.hostile_input and logged.
36. Nothing bounds the streams a peer opens on one connection: yamux accepts every SYN (py-libp2p's backlog limit of
   256 holds only for streams this host opens) and the swarm starts a task for each, which writes the
   multistream-select header and waits up to 10 s for the peer to name a protocol. So one peer sending bare SYN
   frames, 12 bytes each, keeps the host busy with nothing else and holds as many tasks and streams as it sends in
   10 s. Repro: hosts A and B, A dials B; B writes 20,000 WINDOW_UPDATE+SYN frames (its yamux connection's
   _write_frame, 500 to a write) and never sends on them: A held up to 3,400 streams at once (the two hosts in one
   process, on a loaded 2-CPU machine, took 40 s to send and handle them). Handled (in _Yamux, quirk 35): a stream the
   peer opens while MAX_INBOUND_STREAMS of its streams are open on the connection (not closed by both ends, nor reset by
   either) is reset as its SYN is read (67), before any task or negotiation; the first such
   stream of a connection is counted in HostStats.hostile_input and logged. go-libp2p's resource manager bounds inbound
   streams per peer in the same way. Same repro: at most 260 streams at A, its memory up 2 MiB where it was 34, and the
   20,000 sent and handled in 16 s. The streams open are counted as each opens and closes (_Yamux.peer_streams_open,
   kept by quirk 65's stream class): the walk of the connection's streams at each SYN, as this was first handled, made
   each SYN cost the host as much as the streams held: B holding 250 streams open, then writing 5,000 SYNs, took A
   1.22-1.26 s of CPU, 0.78-0.80 s with the count. A stream counted off at first once this host closed it for sending
   (its answer written), but py-libp2p forgets a stream only once both ends closed it (or either reset it), and the
   swarm lets its task and its token of ResourceLimits.max_streams go as the handler returns: a peer that never closed
   its side of the streams answered kept each in the connection's streams for the connection's life, uncounted, and
   opened as many as it liked. Repro (benchmarks/p2p_exhaust.py answered): B opens 1,000 streams with raw SYN+DATA
   frames naming a protocol whose handler answers and returns, and never closes them: A answered and kept 1,000,
   counted 1 open, 2.8 MiB allocated (2.8 KiB a stream) in 8.1 s. Such a stream now counts until the peer closes its
   side too (py-libp2p's and js-libp2p's clients close theirs once they read the answer, vouchnet's as they leave the
   stream's `async with`). Same repro: 255 answered and kept (the 256th stream open is B's pubsub stream), 256 counted,
   745 reset, 0.8 MiB in 2.9 s; once B closes them, the streams it opens are answered again.
37. Gossip control messages cost the receiver far more than the sender, without bound per RPC: a GRAFT for a topic
   the host does not join is answered with a PRUNE RPC of its own (and a backoff entry kept 60 s, quirk 20), each
   IHAVE entry passes a per-topic rate limit (new topics pass) and sends an IWANT, and each IWANT entry past 10 a
   second logs a warning. Repro: host A subscribed to one topic, peer B writes RPCs on its /meshsub/1.2.0 stream
   to A: 3 RPCs of 20,000 GRAFTs for distinct topics (190 KB each) took 14.4 s of CPU and delayed another peer's
   message 13 s; 10 RPCs of 20,000 one-id IHAVEs for distinct topics (630 KB each), 6.9 s; 3 RPCs of 20,000
   one-id IWANTs (480 KB each), 59,940 warning lines. Handled as go-libp2p does, before py-libp2p sees the
   control message (_GossipSub.handle_rpc): GRAFT, PRUNE and IHAVE for topics the host does not join are
   dropped, and so are GRAFTs and PRUNEs repeating a topic in one RPC (20,000 GRAFTs of the host's topic took 0.25 s
   each RPC), at most MAX_IHAVE_MESSAGES IHAVEs and MAX_IHAVE_LENGTH ids are taken from one RPC (go-libp2p's limits
   per heartbeat, which quirk 57 keeps), and its IWANTs are read as one of at most MAX_IHAVE_LENGTH ids;
   HostStats.control_dropped counts what was dropped.
38. An inbound connection holds its slot (quirk 31) through its handshake for up to the swarm's
   inbound_upgrade_timeout (10 s) however little the peer sends, and the slot is taken before a byte is read, so
   plain TCP connections that never start Noise (no key, no crypto: a SYN each) hold every slot, and quirk 34
   cannot free one, the connection being no peer's yet. Repro: a host with the default 200 inbound slots; 300
   sockets from 127.0.0.2 connect to it and send nothing: 200 slots taken, another host's connect() refused at
   once ("unable to connect"), for as long as the sockets are renewed every 10 s (20 a second). Handled with
   quirk 34's rule: when every slot is taken and no inbound connection is idle, a new connection takes the slot of
   the oldest connection still in its handshake, which is closed (HostStats.handshakes_aborted); an honest
   handshake takes milliseconds, so a flood must renew every slot in that moment to push one out. Same repro: the
   connect() succeeds at once.
39. A message in the message cache is sent again to a peer for every IWANT it sends for it, up to the library's 10
   IWANTs a second, where go-libp2p sends a message to one peer at most 3 times (GossipRetransmission): one IWANT of
   2 KB naming 40 cached messages of 20 KB is answered with 800 KB. Repro: host A publishes 40 messages of 20 KB
   to peer B, which writes an RPC of IWANT for their 40 ids on its /meshsub/1.2.0 stream to A every 50 ms: 40 RPCs,
   77 KB in all, had A send 16 MB in 3 s. Handled: _GossipSub.handle_rpc takes from an IWANT only the ids of
   cached messages sent to that peer fewer than GOSSIP_RETRANSMISSION times in answer to IWANTs (the count is
   forgotten with the message, at the heartbeat); the rest count in HostStats.control_dropped.
40. Multistream-select takes any number of protocol proposals on one stream (or connection, before Noise and yamux)
   for as long as its 10 s timeout, and answers each "na" with a frame of its own: about 9 bytes of the peer's
   cost a yamux frame, a Noise frame and a socket write. Repro: hosts A and B, A dials B; B opens a stream with one
   DATA frame holding the multistream header and 5,000 proposals of unknown protocols (44 KB): 2.3-3.3 s of CPU in
   the process of both hosts. Handled (Multiselect.negotiate wrapped, guarded by its parameters, as 24): a peer
   proposing more than MAX_PROTOCOL_PROPOSALS protocols (or asking "ls" as often) in one negotiation has it fail,
   and the stream (or connection) is reset, as for any failed negotiation. An honest peer proposes a few.
41. GossipSub.publish, which every message this host sends or relays goes through, appends the time to a list per
   topic (recent_message_deliveries) that only adaptive gossip's health reads and trims; with adaptive gossip off
   (quirk 3) nothing trims it, so a node keeps a float for every message it ever routed: 32 bytes each, some
   55 MB a day at 20 messages a second. Repro: host A publishes 300 messages to its peer B: after the heartbeats,
   each holds 300 entries. Handled: _GossipSub.mesh_heartbeat empties it.
42. A backoff (back_off[topic][peer]) is deleted only when _check_back_off looks it up after it ended, which it
   does for peers in the topic: one of a peer that left is kept for ever, and a PRUNE's backoff is the peer's to
   set, up to 2^64 - 1 seconds. So every peer that pruned us or that we pruned, then left, stays in the table, and
   a stranger making keys by the thousand grows it at will. Repro: a peer connects to host A, sends a PRUNE of A's
   topic with backoff 1 (then another peer with 2^40) and leaves: 13 s later A still holds both entries. Handled:
   _GossipSub.mesh_heartbeat forgets backoffs over for grafting too (_forget_backoffs, go-libp2p's clearBackoff),
   and handle_rpc takes a PRUNE's backoff as at most MAX_PRUNE_BACKOFF_S: the table holds the peers that pruned
   or were pruned within the last MAX_PRUNE_BACKOFF_S + BACKOFF_SLACK_S seconds.
43. The swarm tells its auto-connector of every disconnection (record_disconnect: the peer, when), and only the
   auto-connector's own rounds prune that table, which quirk 6 stops: a host keeps an entry for every peer that
   ever left, and a stranger making keys grows it by one a connection. Repro: a peer with a fresh key connects
   to a host and leaves: network.auto_connector._recent_disconnects holds it for ever. Handled:
   _PeerNotifee.disconnected clears it (AutoConnector.clear_cooldown), as nothing reads it.
44. Nothing bounds what all connections hold together: quirks 35 and 36 bound one connection (256 streams open, the
   windows granted: up to 62 MiB buffered while its streams are in negotiation), and py-libp2p's resource manager
   counts no byte yamux buffers. Keys are free to make, so peers of fresh keys each take a connection's allowance.
   Repro (benchmarks/p2p_exhaust.py many): 50 hosts connect to host A, subscribe to a topic (so their connections are
   in use, 34) and each opens 250 streams and sends 256 KiB on each while A negotiates them: A buffered up to 871 MiB
   at once, its process's RSS went from 91 to 1,004 MiB. Handled as go-libp2p's resource manager does with its system
   scope (_NodeBudget), with go-libp2p's base system limits (which it raises with the machine's memory) as defaults:
   HostConfig.inbound_streams_budget, 1,024 streams peers opened and have open across connections, and
   buffered_bytes_budget, 128 MiB buffered. A stream opened past the first is reset as its SYN is read (67; HostStats.
   streams_over_budget); a DATA frame that would take the bytes past the second closes the stranger connection
   buffering the most, GO_AWAY internal error first, and the next, until it fits; the frame's own connection if it
   buffers the most (HostStats.connections_over_budget). Strangers may take all but HostConfig.budget_reserve (a
   quarter) of each; peers protected by set_protected may take that share too, so strangers never starve them
   (go-libp2p gives allowlisted peers a system scope of their own). Each connection's streams are counted as of the
   last one it accepted, and its bytes as of its last frame (the bytes of the one it reads included), and exactly,
   across connections, only when a sum passes the budget (a walk of every stream: a stream opened while they are at it
   costs one); a frame read and not yet buffered in that moment is missed, so the bytes may pass the budget by about a
   frame for each connection reading one. Same repro: at most 98 MiB buffered (strangers' share 96), RSS from 92 to
   221 MiB, 49 of the 50 connections closed, in 32-73 s where filling them took 466 s.
45. Pubsub reads every RPC of a peer whose score is below the graylist threshold, which GossipSub v1.1 says to ignore
   (go-libp2p drops such an RPC before any processing, AcceptFrom): py-libp2p asks whether a peer is graylisted only
   to send it messages, to graft or prune it and to refuse its GRAFT. Repro (this module's hosts, the fix below left
   out): hosts A and B meshed, A's PeerScoring with publish and graylist thresholds of -30, B publishes 4 messages A's
   validator rejects (B's score at A -40); B writes one RPC on a /meshsub/1.2.0 stream of its own, subscribing to
   another topic and asking (IWANT) for a message A published: A records the subscription and sends the message.
   Handled (patched by name and parameters, as 24): pubsub checks the sender's signed peer record of each RPC it reads
   with maybe_consume_signed_record before anything else; in the task reading a peer's stream (_Pubsub.
   continuously_read_stream) that call first asks whether the peer's score over the topics the host joins is below the
   threshold and if so empties the RPC (HostStats.graylisted_rpcs): nothing in it is read, checked or answered. The
   RPC is still parsed, as in go-libp2p; a graylisted peer that reconnects stays graylisted (48).
46. Pubsub keeps a peer's subscriptions to up to 100 topics (Pubsub.max_subscriptions_per_peer) of any length, a topic
   name being a protobuf string as long as an RPC (1 MiB), for as long as the peer stays connected, and logs a warning
   for each subscription past the 100. Repro (benchmarks/p2p_memory.py topics): a peer connects and writes 100 RPCs
   on a /meshsub/1.2.0 stream of its own, each subscribing to one topic of 1,000,000 characters: the process held
   97.5 MiB more (tracemalloc), 100 MB of topic names; keys are free to make, so each stranger can do as much.
   go-libp2p keeps every subscription unless given a subscription filter (an allowlist or regexp, which
   WrapLimitSubscriptionFilter bounds per RPC), rust-libp2p bounds a peer's topics with MaxCountSubscriptionFilter.
   Handled (_Pubsub.handle_subscription): a subscription to a topic longer than MAX_TOPIC_LENGTH (256 characters,
   the longest Host.subscribe takes), or past the peer's MAX_PEER_TOPICS (32; vouchnet joins two topics a network),
   is dropped; the first of a peer's while it is connected is counted in HostStats.hostile_input and logged. Same
   repro: 2.1 MiB more (both hosts' own work), no topic kept.
47. GossipSub.publish, which every message this host sends or relays goes through, keeps the message whole in
   equivocation_detection, by from || seqno, to penalise an origin that sends other data under the same id later (a
   py-libp2p addition, in neither the GossipSub spec nor go-libp2p); the heartbeat trims it only once it holds more
   than 1,000, to the last 500, so a host always holds the last 500 to 1,000 messages it routed: up to 250 MiB of
   256 KiB messages, which any org can publish. Repro (benchmarks/p2p_memory.py messages): a peer publishes 200
   messages of 256 KiB to the host, whose validator accepts them, and stops; once the message caches shifted them
   out, the routers still keep 50 MiB each and the process holds 104 MiB more (resident: protobuf's arenas are not
   Python's to trace). vouchnet needs none of it: a message under an id seen in the last 120 s is dropped as seen,
   and any other is validated afresh (quirk 27), each record in it checked on its own signature and deduplicated
   by record id; an org signing two versions of its log is for gossip.forks to find, whatever ids carried them.
   Handled: _GossipSub._check_equivocation keeps nothing and lets every message pass. Same repro: 2-4 MiB more.
48. A peer's score is forgotten as it disconnects (GossipSub.remove_peer calls PeerScorer.remove_peer), where GossipSub
   v1.1 retains it (RetainScore) "so that malicious peers cannot easily reset their score": a peer graylisted for
   flooding invalid messages is heard again by reconnecting, and a new TCP connection costs nothing; so does a peer
   resetting its pubsub stream. Repro: hosts A and B meshed, A's PeerScoring with publish and graylist thresholds of
   -30, B publishes 4 messages A's validator rejects (B's score at A -40), B disconnects and connects again: A's score
   for B starts from 0, and A reads B's hello and records its subscription. Handled (the scorer replaced in
   _GossipSub): a peer leaving with a negative score keeps its counters, frozen while it is away (no heartbeat
   decays them, as in go-libp2p-pubsub and rust-libp2p: decaying on, even a score of -1000 rose above a graylist
   threshold of -80 in 250 heartbeats, so most of the period protected nothing), for PeerScoring.retain_score seconds
   (3600, the default of rust-libp2p and js-libp2p; go-libp2p-pubsub has none, its users set 5 min to 6 h), and has
   them back, decaying again, if it reconnects within that time (_RetainingScorer, _RetainedScores): they are moved
   out of the tables py-libp2p's heartbeat decays, and the scorer answers a retained peer's score from them, also
   for the RPCs it sends on reconnecting before the router adds it; a score of 0 or more is forgotten as before, as
   go-libp2p does for a positive one. Keys are free to make, so at most PeerScoring.retained_peers (1,024) are kept:
   past that the score least negative goes (frozen, so its score when it left; of equal scores the older), and a
   flood of fresh keys must each be penalised further than a peer to push its score out. go-libp2p and rust-libp2p
   keep any number. A retained peer's counters that are 0 are dropped (score() makes one in every table), and the
   heartbeat forgets counters of peers neither connected nor retained (a penalty for a message judged after its peer
   left, or score() asked of a peer gone, made them and nothing removed them).
   benchmarks/retained_scores.py: 537 bytes a retained peer (0.5 MiB at the cap), 6-10 us a heartbeat with the table
   full (1.1-1.2 ms while their counters were decayed, 4.6-8.6 ms with the zeros kept too), 0.2-0.3 ms for a
   departure that pushes one out.
49. Yamux writes every frame with no timeout (Yamux._write_frame: a lock, then the socket), a GO_AWAY (Yamux.close)
   and a stream's RST or FIN as any other, so a peer that stops reading holds whatever writes to it for ever: the
   task that reads its frames answers each PING with one of its own, and once the socket buffers are full waits on
   that write, holding the lock every other write and close of the connection waits for. Nothing closes the
   connection then: Host.disconnect never returns, a close bounded by a caller's timeout is cancelled with the
   connection left open (Yamux.close sets nothing before its GO_AWAY is written), and a host with such a peer did not
   even stop within its test's 30 s bound. And once a write fails (the peer reset the connection), the reading task
   takes the error as a passing one: it logs it at ERROR, sleeps 10 ms and reads on, answering each ping still
   buffered with another failed write. Repro (benchmarks/p2p_exhaust.py deaf): a peer writes pings, 5,000 to a write,
   and reads nothing: 10,000 pings (120 KB) stalled the host, whose connection was still open 60 s later. go-yamux
   closes a session whose write takes ConnectionWriteTimeout (10 s). Handled as go-yamux does (in _Yamux, quirk 35):
   a frame the socket does not take within WRITE_TIMEOUT_S (10 s) closes it, which ends every task on the connection
   (the wait for the lock is not counted: a task that waits long behind a stuck write is freed by its timeout, and a
   busy host's own queue of writes is no sign of a deaf peer), and a write that fails marks the connection as shutting
   down, which the reading task then ends. Same repro: the connection closed after 10.9 s.
51. A peer's SUBSCRIBE costs the host three tasks (Pubsub.handle_subscription: flush_pending_messages,
   _replay_recent_messages, on_peer_subscribed), and the second writes the peer every message the cache holds for the
   topic, straight to its stream (no queue, no retransmission count: quirk 39). Pubsub sends them once a subscription,
   and forgets it did as the peer unsubscribes, so a peer alternating UNSUBSCRIBE and SUBSCRIBE is sent the cache over
   and over; one RPC may hold 5,000 subscriptions (DefaultMaxSubscriptionsPerRPC), each SUBSCRIBE among them three
   tasks. Repro (benchmarks/p2p_exhaust.py churn-single, churn-packed): a subscribed peer, the host's cache holding 30
   messages of 20 KB: 2,000 RPCs of one UNSUBSCRIBE and one SUBSCRIBE (58 bytes each) had the host start 6,003 tasks
   and write the peer 20.7 MiB, 3.1 s of CPU (both hosts'); 4 RPCs of 2,500 such pairs (145 KB each), 30,005 tasks
   and 71.1 s of CPU over 87 s.
   go-libp2p keeps no such cache replay; its FilterSubscriptions keeps one entry a topic in an RPC and none for a topic
   both subscribed and unsubscribed in it. Handled: _Pubsub.net_subscriptions nets an RPC's subscriptions so (in
   quirk 45's per-RPC hook), and _Pubsub._forget_subscription keeps the record that the recent messages were sent, so
   they are sent once a connection. Same repro: 3 tasks, 0.3 MiB and 0.5 s of CPU; 3 tasks, 0.3 MiB, 0.0 s.
53. A peer that comes back before its old connection's end was handled is never given a pubsub stream again: pubsub
   keeps one outbound stream per peer (Pubsub.peers) and skips a new connection of a peer it holds one for, and it
   forgets a peer told gone only if none of its connections is open, so a peer whose old connection's disconnection is
   handled after, or about as, the new connection opens keeps the stream on the closed connection. The peer that
   restarted never hears this host's subscriptions (they go in the hello written on a new stream), so its mesh stays
   empty, and the messages it publishes are held for a subscription it never hears (go nowhere); this host, which still
   counts it in its mesh, sends nothing until a write on the dead stream fails, and that failure forgets the
   subscriptions the peer announced on its new stream. Repro: host B; host A (a fixed seed) connects, meshes with B and
   stops, and starts again at once and connects: in about one restart in two (and in 5 of 8 runs of
   tests/node/test_restore_log.py, whose node restarts after a copy of its data directory), A's Pubsub.peer_topics never
   holds B, A's mesh stays empty, B's Pubsub.peers[A] is a stream of the closed connection, and A's next message reaches
   B only by vouchnet's sync. Handled (_Pubsub): a new connection of a peer whose stream's connection is closed, and the
   end of a connection that leaves the peer connected otherwise, drop that stream (its sending loop ends, the router
   forgets the peer's mesh places, the peer's subscriptions are kept) and open one on the open connection, hello first;
   a stream so dropped is never written. Same repro: both meshes form again within a heartbeat or two, every restart.
54. Pubsub numbers this host's messages (seqno) from the second it started, one a message (Pubsub.counter =
   int(time.time())), and a peer drops as seen a message whose origin and seqno it saw within 120 s; so a node that
   published n messages in a run and restarts within n seconds of that run's start numbers its next messages as ones
   it sent before, and its peers drop them silently for two minutes (a node gossips a checkpoint every interval and
   its records in batches: tens of messages in a short run). Repro: host A publishes 20 messages to host B, stops and
   starts again at once with the same seed: B receives none of A's next messages. Handled: _Pubsub starts the counter
   at the time in nanoseconds, as go-libp2p does (time.Now().UnixNano()). Same repro: B receives them.
55. Pubsub keeps a peer's IDONTWANT ids (GossipSub.dont_send_message_ids) until the next heartbeat, at most
   max_idontwant_messages (10) a peer, and an id may be as long as an RPC (1 MiB), so a peer has a host hold about
   10 MiB until the heartbeat, each peer alike. A vouchnet message id is GossipSub's default, from || seqno: a peer ID
   of at most ~42 bytes and 8 bytes. Repro: host A subscribed to a topic, peer B writes 10 RPCs on its /meshsub/1.2.0
   stream to A, each an IDONTWANT of one 1,000,000-byte id: A held 10,000,000 bytes of ids for B. Handled
   (_GossipSub.handle_rpc, beside quirk 37): IDONTWANT ids longer than MAX_MESSAGE_ID_LENGTH (128 bytes) are dropped
   and counted in HostStats.control_dropped. Same repro: 0 bytes held, 10 ids dropped.
56. A peer's IHAVE ids of any length that the host has not seen are sent back to it in an IWANT, and Pubsub's sending
   loop (quirk 30's, _Pubsub.handle_sending_messages) keeps the last RPC it wrote to a peer until the next one is
   queued, however long that is: one 1 MiB IWANT a peer, with no heartbeat to end it. Py-libp2p itself keeps none of
   the ids (no gossip promises, no seen-cache entry, IWANT counts only for cached messages, quirk 39). Repro: host A
   subscribed to a topic (heartbeat 1 s), peer B writes 10 RPCs on its /meshsub/1.2.0 stream to A, each an IHAVE of
   one 1,000,000-byte id for it: three heartbeats later A's tasks held 1,000,729 bytes (45 RPCs of 5,000 ids of 20
   bytes: 110,725). Handled: IHAVE and IWANT ids longer than MAX_MESSAGE_ID_LENGTH are dropped with quirk 55's
   (counted in HostStats.control_dropped), and the sending loop lets go of each RPC once written. Same repros: 501
   bytes held, the 10 long ids dropped.
57. A peer's IHAVEs are read without a budget per heartbeat: quirk 37 bounds one RPC (MAX_IHAVE_MESSAGES IHAVEs,
   MAX_IHAVE_LENGTH ids), and py-libp2p answers the unseen ids of each of the first 10 IHAVEs a second a topic with
   an IWANT of them all, where go-libp2p reads the IHAVEs of a peer's first 10 RPCs a heartbeat (MaxIHaveMessages)
   and asks it for at most 5,000 ids a heartbeat (MaxIHaveLength), each once. And an IWANT naming a cached message
   again and again is answered with it as often, up to quirk 39's GOSSIP_RETRANSMISSION, in one RPC; go-libp2p sends
   it once. Repro (benchmarks/p2p_exhaust.py ihave): host A subscribed to a topic (heartbeat 1 s), peer B writes 90
   RPCs on its /meshsub/1.2.0 stream to A, 9 a second (py-libp2p penalises a peer past 10 a second a topic: 40 such
   RPCs as fast as A read them had B graylisted from the 28th), each an IHAVE of 5,000 unseen ids of 20 bytes (110
   KB): A asked for 450,000 ids, writing B 9.5 MiB of IWANTs, 2.0-2.1 s of CPU in the two hosts' process. Handled
   (_GossipSub._budget_ihave, after quirks 37 and 56): of a peer's IHAVEs, those of its first MAX_IHAVE_MESSAGES RPCs
   carrying any in a heartbeat are read, and only for unseen ids, each once, until MAX_IHAVE_LENGTH were asked of the
   peer in the heartbeat (go-libp2p picks them at random, this host in order); an emptied IHAVE is left for
   py-libp2p's rate limit to count, and penalise, as before. _limit_retransmissions (39) reads an id once an IWANT.
   Ids dropped so, and ids py-libp2p cannot read (it logged a warning for each), count in HostStats.control_dropped.
   Same repro: 50,000 ids asked (5,000 a heartbeat), 1.1 MiB written, 1.1 s of CPU (two runs each, alternating with
   the code before).
58. Pubsub answers the IHAVEs and IWANTs of a peer scoring below the gossip threshold, which GossipSub v1.1 says to
   ignore ("gossip from that peer is ignored"; go-libp2p's handleIHave and handleIWant return nothing for it, and
   PeerScoring says so): py-libp2p asks the score only to choose whom to send gossip to. Repro: hosts A and B meshed,
   A's PeerScoring with gossip_threshold -5, B publishes a message A's validator rejects (B's score at A below -5,
   above the publish threshold), then writes one RPC on a /meshsub/1.2.0 stream of its own, an IWANT for a message A
   published and an IHAVE of an unseen id: A sends B the message and asks for the id. Handled (_GossipSub.handle_rpc,
   before quirk 57): the IHAVEs and IWANTs of a peer whose score over the topics the host joins is below the
   threshold are dropped, counted in HostStats.control_dropped; the rest of its RPC is read. Same repro: nothing
   sent, nothing asked.
59. Many of py-libp2p's log lines come once for each message, control entry, frame or connection of a peer's, so a
   peer, hostile or merely busy, writes them as fast as it sends: GossipSub.publish queues every message routed for
   each connected peer it has not heard subscribe to the topic (in case its subscription is on its way), at most 100
   a peer, and warns "pending message queue for peer ... exceeded limit" for each one it then drops. Repro: host A
   subscribed to topic t, host B subscribed to topic u only connects to A; A publishes 1,000 messages to t -> 899 such
   warnings (and likewise the IHAVE, IWANT and GRAFT warnings of gossipsub and yamux's per-frame and per-connection
   ones). The node's log limit (vouching.log_limit: 20 lines of a call site in 10 s) still let each write 2 a second.
   Handled: every py-libp2p logger has LIBP2P_LOG_LIMIT as a filter, a record of WARNING or worse from one call site
   written at most once in LIBP2P_LOG_WINDOW_S (60 s), the next counting those left out (`suppressed`); records below
   WARNING pass (asked for when debugging). py-libp2p makes some loggers only as it first uses them, after a host
   started (libp2p.connection_shutdown, libp2p.network.stream.net_stream), so open_host() makes loggers under
   `libp2p.` of a class adding the filter as each is made (_Libp2pFiltered). Repro: open a host, then
   logging.getLogger("libp2p.new").warning("w") 5 times -> 5 lines written; handled, 1. The pending queue's drops
   count in HostStats.pending_dropped: a count that keeps growing says a connected peer never joins the node's topics
   (another network's node, or one misconfigured), for which the node holds up to 100 messages. Same repro: 1 line,
   pending_dropped 899.
60. A connection's close cut off by a timeout leaves the dead connection listed, for good: SwarmConn.close() marks it
   closed first, closes the muxer (Yamux.close sleeps 0.1 s after closing the socket), and only then takes it off the
   swarm's list and, after another 0.1 s sleep, notifies its disconnection; a later close() returns at once for a
   connection marked closed, so nothing finishes it. The peer stays among the connected peers, no disconnection event
   comes, and pubsub keeps it. Repro: hosts A and B connected; A runs `with trio.move_on_after(0.05): await
   conn.close()` on its connection to B -> 5 s later the connection is closed (and its muxer) and still in A's
   network.connections, and A's notifee was never told of a disconnection (a node's close_timeout of 0.5 s, cut so
   under load, left a blocked peer listed). Handled (_close_connection, for every connection the host closes within
   close_timeout: a blocked peer's, an idle inbound one, a peer disconnected): a close cut off is finished as
   SwarmConn's would have been, the socket closed if the muxer is still open, the connection taken off the swarm's list
   (Swarm.remove_conn) and its disconnection notified (Swarm.notify_disconnected), shielded and within close_timeout.
   A close cancelled (the host stopping) still closes its socket: the connection marked closed, the swarm's own stop
   skips it, and the peer saw this host go only as its writes to it timed out (10 s).
61. A stream whose `async with` is left by cancellation stays open, on both sides, for the connection's life:
   NetStream.reset() first takes YamuxStream.close_lock, a checkpoint that raises Cancelled in a cancelled scope, so no
   RST is sent, the stream is not marked reset, and neither the swarm connection nor the muxer lets it go. A sync
   session ended for a catch-up (gossip.session_slots) or at its 10-minute bound left one each time, and its peer's
   handler waited on it. Repro: A opens a stream to B inside a CancelScope, cancels the scope, and leaves the
   stream's `async with` -> after 5 such rounds A's connection to B lists 5 more streams (none more when each round
   ends by a TooSlowError instead), and B's read of each never returns. Handled: Stream.reset() resets shielded, within
   close_timeout (a peer not reading may hold the RST's write; cut off, the stream is left as before). Not as the host
   stops (Host._cut_closes_when_stopping cuts such resets off, as it does a disconnect's closes): its exit closes the
   connection anyway, and each stream left by the stop, in turn, waited close_timeout for a peer that reads nothing.
   Repro: host A holds a stream to B; B stops reading (its yamux reading task waits for a lock), A's writes fill the
   sockets' buffers; A's nursery cancelled -> the stream's `async with` is left 5 s later (close_timeout), at once
   with the fix.
62. A stream to a peer that hangs up fails while the peer is still among the connected peers: yamux marks the
   connection shutting down, resets its streams and wakes their readers, then closes the secured connection (a
   checkpoint), and only then does SwarmConn take it off the swarm's list and notify its disconnection, thousands of
   scheduler steps later. Repro: hosts A and B, a stream from A to B that A reads; B's host cancelled -> A's read
   raises, and B is among A.connected_peers() right after, the stream's `async with` left too (10 runs of 10), its
   connection's muxer event_shutting_down set. A fetch of gaps whose peer left mid-session took it for a peer that
   reset its stream and stayed (an answer without the records: the issuer backed off). Handled: Host.staying_peers
   lists the peers that have a connection whose muxer is not shutting down.
63. py-libp2p closes a connection itself, not through Yamux.close, when the peer announces a DATA frame longer than the
   largest receive window (MAX_WINDOW_SIZE, 16 MiB) or does not send a frame's body within its read timeout (60 s,
   PY_YAMUX_DATA_READ_TIMEOUT), so nothing told such a close from the peer's own: the peer's leaving said the peer or
   the network closed it (PeerEvent.closed_here False), and the peer manager hinted that the peer may have blocked
   this node. And a close this host began counted as its own from that moment, so the peer's close, read before this
   host's GO_AWAY went out, counted as this host's. Repro: hosts A and B meshed; B writes a DATA header of 16 MiB + 1
   bytes on the stream A's pubsub opened to it (its yamux connection's _write_frame): A closes the connection, and
   its PeerEvent of B's leaving says closed_here False; so does a header of 64 KiB followed by 10 bytes of its body,
   with the timeout set to 0.5 s. A begins to disconnect B, its muxer's close waiting for the streams lock (held by
   the test), and B disconnects A: A reads B's GO_AWAY, and its PeerEvent says closed_here True; and so it says when
   B, not A, reset the connection (a TCP RST) as A's close waited, A's reading task waiting for the lock too (B opened
   a stream): A's GO_AWAY's write fails and marks the connection shutting down, so the read that fails next is not
   told as the peer's end. Handled (the yamux module's read_exactly wrapped, guarded by its name and parameters, as
   24): in a _Yamux's reading task, each header read is told to the connection (a context variable names it, as
   45's): a DATA frame past MAX_WINDOW_SIZE is closed here and counted in HostStats.hostile_input, and a GO_AWAY, a
   failed read or a failed write (py-libp2p's write to a socket this host closed returns quietly) is the peer's or the
   network's end, unless this host's close had gone out (its GO_AWAY written, or the socket closed: the connection
   then shutting down); a body read timing out is closed here. Same repros: closed_here True, True, False and False.
64. A connection whose peer answers nothing is kept: yamux pings it every 30 s (RTT_MEASURE_INTERVAL, for its RTT
   estimate), waits 10 s for the answer and, none come, pings again 30 s later, so a peer gone without a word (its
   machine off, a NAT or firewall that dropped the connection) stays connected until the kernel gives up retransmitting
   to it (Linux's default tcp_retries2: about 15 minutes), or for good while nothing is written to it but the pings,
   which the socket's buffer takes: listed connected, not redialled, kept in the mesh, its sync sessions waiting out
   their timeouts. go-yamux closes a session whose ping goes unanswered for its ConnectionWriteTimeout (10 s, its
   keepalive). Repro: hosts A and B connected; B's yamux reading task waits for a lock (A opens a stream while B's test
   holds its streams lock), so B answers no ping though its kernel takes every frame: A keeps the connection (20 s in
   the test, the pings 0.1 s apart). Handled (_Yamux._measure_rtt_loop, in place of py-libp2p's, which the muxer's task
   starts by that name): each ping unanswered within KEEPALIVE_TIMEOUT_S (10 s), the peer sending no frame meanwhile,
   closes the connection here, its socket closed (no GO_AWAY: the peer reads nothing); the RTT estimate is taken as
   before, but from the time a ping's write began: py-libp2p took it once the write returned, so an answer read
   meanwhile gave the time since the previous ping (30 s, or the clock's reading for the first; the streams' window
   tuning reads the estimate). Same repro: closed 0.5 s (the timeout in the test) after the first ping B left
   unanswered. A peer heard from is waited for, frames coming no more than KEEPALIVE_TIMEOUT_S apart: its answer goes
   out behind what it was writing (a sync answer of megabytes in the sockets' buffers, on a slow link), and go-yamux
   pings only a connection quiet for its interval for that reason. Repro: B's answers held while it writes a frame every
   0.1 s -> A closed the connection mid-transfer 0.5 s after its first ping. And py-libp2p takes any answer for the
   answer to its ping, whatever its value (the ping's opaque value, which go-yamux matches and yamux's spec has echoed),
   and takes the RTT from it: a peer answering each ping with another value, stale or made up, kept the connection
   though it answered none of its pings. Repro: as the first, B's pings not sent and its answers' values 1 more -> A
   keeps the connection. Handled (quirk 63's header_read): an answer to no ping awaited is handed to py-libp2p as a ping
   of neither kind, which it passes over, and is no sign of the peer. Same repro: closed 0.5 s after a ping.
   HostStats.unresponsive_closed counts the connections closed so (keepalive), and for quirk 49's write timeout
   (write_timeout).
65. A stream's write that waits for window credit (the peer has not yet read what it was sent) looks at the window
   every 10 ms and gives up after 5 s whatever its caller's deadline (YamuxStream.write): a sync page of a MiB to a
   client checking the previous one for 6 s failed at 5 s though the server gives each write 10 s, and every write
   waiting so costs a wake-up each 10 ms. Repro (benchmarks/p2p_exhaust.py credit): host A writes 320 KiB on each of
   200 streams to B, whose handler reads none, each write with a deadline of 8 s: 0.61-0.63 s of CPU in 2.5 s of their
   wait, and each write failed 5 s into it ("Timed out waiting for window update after 5 seconds."). Handled (yamux's
   stream class replaced where its module builds streams, guarded by its name and write's parameters, as 24):
   _YamuxStream.write waits until the send window or the stream's closing changes (an event set as either is
   assigned: the peer's WINDOW_UPDATE, a reset, the connection's end), for as long as its caller's deadline allows, or
   WINDOW_WAIT_S (10 s) for a caller that set none (pubsub's sending loop), after which it fails as before. Same repro:
   0.00 s of CPU, each write cut at its deadline (8.0-8.1 s).
66. Yamux answers every ping a peer sends, at once, from the task reading the connection (Yamux.handle_incoming): each
   ping of 12 bytes costs the host an encrypted frame and a socket write, and a peer sends thousands in one frame of its
   own, where go-yamux queues at most its PingBacklog of answers and drops the rest. Repro (benchmarks/p2p_exhaust.py
   pings): a peer writes 5,000 pings in one write (60 KB): read in 3.3 s, each answered, 0.77 s of CPU in the process of
   both hosts; of 50,000, 5,403 were answered in 11.5 s, and then the host, writing answers the peer's process was too
   busy to read, closed the connection for its write timeout (49). Handled (quirk 63's header_read): at most
   MAX_PING_ANSWERS_PER_S (10) pings of a connection are answered in a second of trio's clock (a peer's keepalive pings
   every 30 s or so); the rest are handed to py-libp2p as pings of neither kind, which it passes over, and the first of
   them is counted in HostStats.hostile_input and logged. Same repro: read in 0.1 s, 10 answered, 0.03 s of CPU; 50,000
   in 1.1 s, 20 answered, 0.29 s, the connection kept.
67. Yamux acknowledges every stream a peer opens (a WINDOW_UPDATE with ACK, written by the task reading the connection)
   and builds it before the host can refuse it, so each stream opened past quirk 36's and 44's bounds cost two
   encrypted writes, the ACK and this host's reset, and a stream object, for 12 bytes of the peer's; go-yamux writes
   one reset for a stream it refuses, and no ACK. Repro (benchmarks/p2p_exhaust.py syns): a peer writes 5,000 bare
   SYN frames, 500 to a write: the host wrote 5,000 ACKs and 4,745 resets, the SYNs read and answered in 8.9 s, 2.31 s
   of CPU in the process of both hosts. Handled (quirk 63's header_read): a SYN past the bounds is handed to
   py-libp2p without its flags, on a stream it does not know, so it neither acknowledges nor builds the stream (a
   DATA frame's body is read and dropped), and the reading task writes the stream's reset itself. Same repro: 255
   ACKs and 4,745 resets, 5.4-5.9 s, 1.48-1.58 s of CPU.
68. Yamux reads a peer's frames as fast as they come, and each costs the host tens of microseconds of CPU whatever it
   carries (its header parsed, a lock, a timeout's cancel scope, the debug lines py-libp2p formats for every frame
   whatever the log level), 13 bytes of the peer's for a DATA frame of one: quirks 66 and 67 bound what the host writes
   back for pings and SYNs, nothing bounded what it reads. Repro (benchmarks/p2p_exhaust.py tiny): a peer writes 46,000
   DATA frames of 1 byte (600 KB), 5,000 to a write, on a stream id it never opened: read in 6.0-8.0 s, 2.50-2.57 s of
   CPU in the process of both hosts, 32-42% of a core for as long as the peer keeps on. go-yamux reads as fast too.
   Handled (quirk 63's header read, in _Yamux.within_frame_budget): a connection's frames are read FRAME_BURST (2,000)
   at once and FRAMES_PER_S (1,000) a second, a DATA frame on a stream that is open counting less the more bytes it
   carries and nothing from FULL_FRAME_BYTES (1 KiB) on (what the peer may send there is bounded by the windows, quirk
   35), one opening a stream or on a stream not open counting for one, as other frames do; a frame past them waits, its
   reading task reading nothing meanwhile (the peer's frames wait in the sockets, and its writes once they are full),
   until a twentieth of the burst came back (or the connection closes: the reading task ends there, the frame not
   handled, where py-libp2p first took it as read in time); the connection is kept (closing it would let the peer come
   back with a fresh key) and its first wait is counted in HostStats.hostile_input and logged. Honest traffic stays far
   below: in tests/gossip's host, sync and service tests, tests/interop, benchmarks/sync.py and benchmarks/gossip.py (5
   nodes, 1,000 records/s), the most frames a connection read in any second were 1,833 (an echo test writing frames of
   1,000 bytes as fast as it could, which count for 2% each), 415 of gossip (a burst of 1,000 publishes, at most 358 in
   a tenth of a second), 50 between nodes and 43 from the js-libp2p peer. Same repro: read in 44.1 s, 2.80 s of CPU, 6%
   of a core, the connection kept. A DATA frame at first counted for less the more bytes it carried wherever it went:
   the same frames with 1,023 bytes each (`tiny --tiny-bytes 1023`) were read as fast as they came, 46,000 in 11.3 s,
   3.26 s of CPU, 29% of a core; now in 44.1 s, 3.48 s of CPU, 8%.
Not worked around (policy, not a bug to patch): IDONTWANT is sent for every message regardless of size.
Checked and left, bounded already (quirk numbers 50 and 52 left unused): py-libp2p's own bound on streams, the swarm's
semaphore of ResourceLimits.max_streams (10,000), which every stream opened either way awaits, and its resource
manager's count of as many. A peer's streams pass quirk 36's and 44's bounds first (256 a connection, 1,024 in all)
and are reset before the swarm sees them, so the semaphore is never waited on; a stream in negotiation whose connection
closes gives its token back (four peers each leaving with 200 streams in negotiation left it at 10,000). And the
count of IDONTWANT ids: py-libp2p keeps at most max_idontwant_messages (10) ids a peer and empties them every heartbeat
(40,000 ids of 20 bytes in one RPC: 200 bytes held, 0.15 s of CPU); their length is bounded by quirk 55.
And Swarm.close, which closes connections one after the other, each taking 0.2 s or more (Yamux.close and
SwarmConn._cleanup each sleep 0.1 s), which would have a host of many peers stop in seconds: open_host's stop closes
every muxer at once first (25), so Swarm.close finds none left, and the swarm's own stop path (Swarm.run's cleanup) runs
cancelled. A host with 30 peers stopped in 0.36-0.40 s, 60 peers in 0.46 s (close_timeout 0.5 s, the node's), by
cancellation or by leaving open_host, Swarm.close taking 0.001 s.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import inspect
import itertools
import logging
import math
import os
import random
import re
import socket
import statistics
import struct
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from typing import NamedTuple

import libp2p
import libp2p.io.msgio
import libp2p.io.utils
import libp2p.pubsub.gossipsub
import libp2p.pubsub.pubsub
import libp2p.stream_muxer.muxer_multistream
import libp2p.stream_muxer.yamux.yamux
import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import (IMuxedConn, IMultiselectCommunicator, INetConn, INetStream, INetwork, INotifee,
                        IRawConnection)
from libp2p.crypto.ed25519 import Ed25519PublicKey, create_new_key_pair
from libp2p.crypto.keys import KeyType
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import ValidationError
from libp2p.host.basic_host import BasicHost
from libp2p.io.abc import Reader
from libp2p.io.exceptions import IncompleteReadError, IOException
from libp2p.network.connection.exceptions import RawConnError
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.exceptions import SwarmException
from libp2p.network.swarm import Swarm
from libp2p.network.stream import exceptions as lp_stream
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.peer.peerstore import env_to_send_in_RPC
from libp2p.protocol_muxer.exceptions import MultiselectClientError, MultiselectCommunicatorError
from libp2p.protocol_muxer.multiselect import DEFAULT_NEGOTIATE_TIMEOUT, Multiselect
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import DefaultMaxMessageSize, OutBoundQueueSize, RpcQueue
from libp2p.pubsub.score import PeerScorer, ScoreParams, TopicScoreParams
from libp2p.pubsub.utils import maybe_consume_signed_record, safe_bytes_from_hex
from libp2p.pubsub.validators import signature_validator
from libp2p.rcmgr import Direction
from libp2p.security.noise.exceptions import PeerIDMismatchesPubkey
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux.yamux import (DEFAULT_WINDOW_SIZE, FLAG_ACK, FLAG_RST, FLAG_SYN, GO_AWAY_INTERNAL_ERROR,
                                             GO_AWAY_NORMAL, GO_AWAY_PROTOCOL_ERROR, HEADER_SIZE, MAX_MESSAGE_SIZE,
                                             MAX_WINDOW_SIZE, TYPE_DATA, TYPE_GO_AWAY, TYPE_PING, TYPE_WINDOW_UPDATE,
                                             YAMUX_HEADER_FORMAT)
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream
from libp2p.tools.anyio_service import background_trio_service
from libp2p.tools.anyio_service.exceptions import LifecycleError
from libp2p.transport.tcp.tcp import TCP

from gossip.addrs import AddrError, TcpAddr, parse_listen_addr, parse_peer_addr
from gossip.batch import MAX_GOSSIP_MESSAGE
from gossip.frames import encode_frame, parse_frame_header
from gossip.listen_check import bind_error
from gossip.peer_feed import PeerEvent, PeerFeed
from gossip.ratelimit import TokenBuckets
from gossip.verdict import Verdict
from vouching.log_limit import RateLimit
from vouching import did_key

if not libp2p.__version__.startswith("0.8."):
    raise ImportError(
        f"gossip.host works around py-libp2p 0.8.x (found {libp2p.__version__}); re-run the reproductions "
        "in its docstring against the new version before widening the pin"
    )

logger = logging.getLogger(__name__)

GOSSIPSUB_PROTOCOLS = ("/meshsub/1.2.0", "/meshsub/1.1.0")
_MAX_RPC_OVERHEAD = 4096  # room for topic, from, seqno, signature, key and senderRecord around the data
_READ_CHUNK = 65536
_TARGET_WINDOW = attrgetter("target_recv_window")  # a yamux stream's receive window, grown
SENDER_RECORD_TTL_S = 60.0  # how long a signed peer record, sent or accepted, is reused unchanged (quirk 24)
MAX_INBOUND_STREAMS = 256  # streams a peer may have open on one connection at once; more are reset (quirk 36)
MAX_REMEMBERED_RECORDS = 1024  # peers whose last accepted signed peer record a host remembers (quirk 24)
BACKOFF_SLACK_S = 10  # seconds a backoff lasts longer for grafting than for refusing a GRAFT (quirk 20)
MAX_PRUNE_BACKOFF_S = 600  # the longest backoff a peer's PRUNE sets (quirk 42): ten times the 60 s all send
# GossipSub v1.1 opportunistic grafting (quirk 22): how often, below which median mesh score, how many peers.
OPPORTUNISTIC_GRAFT_TICKS, OPPORTUNISTIC_GRAFT_THRESHOLD, OPPORTUNISTIC_GRAFT_PEERS = 60, 0.0, 2
# IHAVE entries, and message ids in IHAVEs and in IWANTs, taken from one RPC (go-libp2p's defaults; quirk 37); RPCs
# whose IHAVEs are read, and ids asked for on them, a peer a heartbeat (quirk 57).
MAX_IHAVE_MESSAGES, MAX_IHAVE_LENGTH = 10, 5000
MAX_PROTOCOL_PROPOSALS = 16  # protocols a peer may propose in one multistream-select negotiation (quirk 40)
GOSSIP_RETRANSMISSION = 3  # times a cached message is sent to one peer in answer to its IWANTs (go-libp2p's; quirk 39)
MAX_TOPIC_LENGTH = 256  # characters of a topic name: the longest this host joins or keeps a peer's subscription to (46)
MAX_PEER_TOPICS = 32  # topics a peer's subscriptions to are kept; vouchnet joins two a network (quirk 46)
MAX_MESSAGE_ID_LENGTH = 128  # bytes of a peer's IHAVE, IWANT or IDONTWANT id; from || seqno is at most ~50 (55, 56)
WRITE_TIMEOUT_S = 10.0  # a yamux frame not written within it closes its connection (go-yamux's write timeout; 49)
WINDOW_WAIT_S = WRITE_TIMEOUT_S  # a stream write whose caller set no deadline waits this long for window credit (65)
# Seconds between a connection's pings, and within which each must be answered, or a frame come, or the connection is
# closed (quirk 64: go-yamux's KeepAliveInterval, and its ConnectionWriteTimeout, within which it waits for the answer)
KEEPALIVE_INTERVAL_S, KEEPALIVE_TIMEOUT_S = 30.0, WRITE_TIMEOUT_S
# Why the host closed a connection whose peer stopped answering (HostStats.unresponsive_closed): a ping unanswered, the
# peer quiet (quirk 64), or a frame the socket did not take (quirk 49).
UNRESPONSIVE_REASONS = ("keepalive", "write_timeout")
MAX_PING_ANSWERS_PER_S = 10  # pings of a peer's answered in a second of trio's clock; the rest are not (quirk 66)
# Frames of a connection's peer read a second, and at once, before its reading waits (quirk 68); a DATA frame on a
# stream that is open counts less the more bytes it carries, nothing from FULL_FRAME_BYTES on. A throttled connection
# reads on once a twentieth of the burst has come back.
FRAMES_PER_S, FRAME_BURST, FULL_FRAME_BYTES = 1000, 2000, 1024
_RANDOM = random.SystemRandom()
# What getaddrinfo looks up for a name in a dial address (quirk 33): the address family, and the records it means.
_LOOKUPS = {"dns": (socket.AF_UNSPEC, "A or AAAA"), "dns4": (socket.AF_INET, "A"), "dns6": (socket.AF_INET6, "AAAA")}


class HostError(Exception):
    """A host operation failed; the message says which and why."""


class ListenError(HostError):
    """A listen address cannot be bound (in use, or not this machine's)."""


class StreamError(HostError):
    """A stream was reset or broke while reading or writing."""


class ProtocolNotSupported(HostError):
    """The peer does not serve the stream protocol asked for (it said so on this connection)."""


class InvalidPeerId(HostError, ValueError):
    """A string is not a base58 PeerID that embeds an Ed25519 key."""


@dataclass(frozen=True)
class PeerScoring:
    """GossipSub v1.1 peer scoring, set explicitly (py-libp2p's defaults put every threshold at -inf).

    Only invalid messages (a validator said REJECT or False, or the message was malformed; IGNORE costs nothing,
    quirk 28) and protocol misbehaviour (IHAVE/IWANT floods) lower a score; counters decay by `decay` per heartbeat.
    Thresholds as in the spec: below `gossip_threshold` no gossip is exchanged with the peer, below
    `publish_threshold` its messages are dropped and ours are not sent to it, below `graylist_threshold` its RPCs are
    ignored unread (quirk 45) and it is kept out of our mesh.
    A peer that disconnects scoring below 0 keeps its counters, frozen until it returns, for `retain_score` seconds
    (GossipSub v1.1's RetainScore; 0 forgets at once), and at most `retained_peers` such peers are kept (quirk 48).
    Peer exchange (PX) from other peers is never acted on: this node chooses its own peers.
    """

    invalid_message_penalty: float = 10.0
    invalid_message_cap: float = 100.0
    misbehaviour_penalty: float = 1.0
    decay: float = 0.99
    gossip_threshold: float = -10.0
    publish_threshold: float = -50.0
    graylist_threshold: float = -80.0
    retain_score: float = 3600.0  # seconds (rust-libp2p's and js-libp2p's default; go-libp2p's apps set 5 min to 6 h)
    retained_peers: int = 1024

    def __post_init__(self) -> None:
        if not 0 < self.decay < 1:
            raise ValueError(f"PeerScoring.decay {self.decay} must be in (0, 1)")
        if not 0 <= self.retain_score < math.inf:
            raise ValueError(f"PeerScoring.retain_score {self.retain_score} must be a finite number of seconds >= 0")
        if self.retained_peers < 0:
            raise ValueError(f"PeerScoring.retained_peers {self.retained_peers} must be at least 0")
        if not 0 >= self.gossip_threshold >= self.publish_threshold >= self.graylist_threshold:
            raise ValueError("PeerScoring thresholds must satisfy 0 >= gossip >= publish >= graylist")

    def _params(self) -> ScoreParams:
        return ScoreParams(
            p4_invalid_messages=TopicScoreParams(
                weight=self.invalid_message_penalty, cap=self.invalid_message_cap, decay=self.decay
            ),
            p5_behavior_penalty_weight=self.misbehaviour_penalty,
            p5_behavior_penalty_decay=self.decay,
            publish_threshold=self.publish_threshold,
            gossip_threshold=self.gossip_threshold,
            graylist_threshold=self.graylist_threshold,
            accept_px_threshold=math.inf,
        )


@dataclass(frozen=True)
class HostConfig:
    """Host settings; GossipSub names follow the spec (D, D_lo, D_hi)."""

    mesh_degree: int = 6
    mesh_degree_low: int = 4
    mesh_degree_high: int = 12
    heartbeat_interval: float = 1.0  # seconds
    gossip_protocols: tuple[str, ...] = GOSSIPSUB_PROTOCOLS  # offered in this order of preference
    max_message_size: int = MAX_GOSSIP_MESSAGE  # bytes of data per gossip message, both ways
    receive_buffer: int = 1024  # messages a subscriber may fall behind before drops (peer events: gossip.peer_feed)
    publish_stall_timeout: float = 10.0  # seconds a peer's send queue may stay half full before we drop it
    dial_timeout: float = 10.0
    stream_open_timeout: float = 10.0
    # Protocols the host's owner will serve once its services run (set_stream_handler): a stream for one opened
    # before its handler is set waits up to early_stream_wait seconds for it, then is reset (at once if its connection
    # closes or its peer is blocked; not served if the peer reset it meanwhile), where it was refused ("na") and the
    # peer's host, remembering the refusal for the connection, passed this host over.
    served_protocols: tuple[str, ...] = ()
    early_stream_wait: float = 10.0  # (a sync client's read timeout: waited longer, its stream is gone)
    close_timeout: float = 5.0  # bound on closing a peer's connections (quirk 60), and listeners when the host exits
    max_connections: int = 300
    idle_inbound_grace: float = 10.0  # seconds an inbound connection has to be put to use, or is closed (quirk 34)
    # The node-wide budget across connections (quirk 44), go-libp2p's system-scope base limits: streams peers have open
    # at once, bytes yamux buffers, and the share of each that only protected peers may take.
    inbound_streams_budget: int = 1024
    buffered_bytes_budget: int = 128 * 2**20
    budget_reserve: float = 0.25
    scoring: PeerScoring = field(default_factory=PeerScoring)
    libp2p_log_level: int = logging.WARNING  # for py-libp2p's own records, which are chatty below this

    def __post_init__(self) -> None:
        if not 1 <= self.mesh_degree_low <= self.mesh_degree <= self.mesh_degree_high:
            raise ValueError("HostConfig needs 1 <= mesh_degree_low <= mesh_degree <= mesh_degree_high")
        if not self.gossip_protocols or not set(self.gossip_protocols) <= set(GOSSIPSUB_PROTOCOLS):
            raise ValueError(f"HostConfig.gossip_protocols must be a non-empty subset of {GOSSIPSUB_PROTOCOLS}")
        if not 0 < self.max_message_size <= DefaultMaxMessageSize - _MAX_RPC_OVERHEAD:
            raise ValueError(
                f"HostConfig.max_message_size must be in 1..{DefaultMaxMessageSize - _MAX_RPC_OVERHEAD} "
                "(py-libp2p's RPC limit minus envelope overhead)"
            )
        for name in ("heartbeat_interval", "publish_stall_timeout", "dial_timeout", "stream_open_timeout",
                     "close_timeout", "idle_inbound_grace", "early_stream_wait"):
            if not getattr(self, name) > 0:
                raise ValueError(f"HostConfig.{name} must be positive")
        if self.receive_buffer < 1 or self.max_connections < 1:
            raise ValueError("HostConfig.receive_buffer and max_connections must be at least 1")
        if self.inbound_streams_budget < 1 or self.buffered_bytes_budget < 1:
            raise ValueError("HostConfig.inbound_streams_budget and buffered_bytes_budget must be at least 1")
        if not 0 <= self.budget_reserve < 1:
            raise ValueError(f"HostConfig.budget_reserve {self.budget_reserve} must be in [0, 1)")
        if any(not p.startswith("/") or p in GOSSIPSUB_PROTOCOLS for p in self.served_protocols):
            raise ValueError(f"HostConfig.served_protocols {self.served_protocols}: each must start with '/' and not "
                             "be a gossip protocol")


class Received(NamedTuple):
    """A gossip message that passed validation. A named tuple so `async for origin, data in ...` works."""

    origin: str  # the peer that published (and, under StrictSign, signed) it; not who relayed it to us
    data: bytes


@dataclass(frozen=True)
class HostStats:
    """Counters since the host opened: where gossip went other than to a subscriber, and why."""

    delivered: int = 0
    rejected: int = 0
    ignored: int = 0  # dropped without penalising the forwarder (a validator's Verdict.IGNORE, quirk 28)
    validator_errors: int = 0
    oversized: int = 0
    dropped_slow_subscriber: int = 0
    hostile_input: int = 0
    stalled_peers_disconnected: int = 0
    peer_events_dropped: int = 0
    mesh_prunes: int = 0  # PRUNEs sent to keep a mesh within D_hi (each starts a backoff, quirk 20)
    control_dropped: int = 0  # GRAFTs, PRUNEs, IHAVE and IWANT ids dropped (37, 39, 57, 58), ids too long (55, 56)
    idle_inbound_closed: int = 0  # inbound connections closed as not put to use within their grace (quirk 34)
    handshakes_aborted: int = 0  # inbound connections closed in their handshake, their slot given to another (38)
    graylisted_rpcs: int = 0  # RPCs ignored unread: their peer's score was below the graylist threshold (quirk 45)
    streams_over_budget: int = 0  # streams a peer opened, reset as the node's inbound streams budget was used (44)
    connections_over_budget: int = 0  # connections closed as the node's yamux buffers were over budget (44)
    pending_dropped: int = 0  # messages queued for a peer not known to join their topic, dropped past 100 (59)
    # connections closed as their peer stopped answering, by UNRESPONSIVE_REASONS (quirks 49, 64)
    unresponsive_closed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UNRESPONSIVE_REASONS, 0))


def peer_public_key(peer_id: str) -> bytes:
    """The raw 32-byte Ed25519 public key embedded in a PeerID (identity multihash, "12D3KooW...")."""
    key = _parse_peer_id(peer_id).extract_public_key()
    if key is None:
        raise InvalidPeerId(f"peer id {peer_id!r}: does not embed its public key (not an identity multihash)")
    if key.get_type() != KeyType.Ed25519:
        raise InvalidPeerId(f"peer id {peer_id!r}: key type {key.get_type().name}, expected Ed25519")
    return key.to_bytes()


def peer_org(peer_id: str) -> str:
    """The org did a PeerID embeds (DESIGN.md §2: a node's PeerID is its org key); InvalidPeerId if none."""
    return did_key(peer_public_key(peer_id))


def peer_id_from_public_key(public_key: bytes) -> str:
    """The PeerID of a raw 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise ValueError(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key)).to_base58()


def _parse_peer_id(peer_id: str) -> ID:
    try:
        pid = ID.from_base58(peer_id)
    except Exception as error:
        raise InvalidPeerId(f"peer id {peer_id!r}: not base58 ({error})") from None
    if not peer_id or pid.to_base58() != peer_id:
        raise InvalidPeerId(f"peer id {peer_id!r}: not a canonical base58 PeerID")
    return pid


@functools.lru_cache(maxsize=4096)
def _peer_str(raw: bytes) -> str:
    # base58 is pure-Python bignum arithmetic; gossip sees the same few origins over and over
    return ID(raw).to_base58()


def _causes(error: BaseException) -> Iterator[BaseException]:
    """An exception and its causes, each once, the members of a group (or of py-libp2p's MultiError) in its place:
    py-libp2p wraps the useful part deep inside."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        err = todo.pop(0)
        if id(err) in seen:
            continue
        seen.add(id(err))
        members = list(getattr(err, "exceptions", None) or getattr(err, "errors", None) or ())
        if members and all(isinstance(m, BaseException) for m in members):
            todo.extend(members)  # a group: its text only repeats its members'
        else:
            yield err
        todo.extend(nested for nested in (err.__cause__, err.__context__) if nested is not None)


def _reason(error: BaseException) -> str:
    """A one-line account of an exception and its causes."""
    parts: list[str] = []
    for err in _causes(error):
        if (text := str(err).strip() or type(err).__name__) not in parts:
            parts.append(text)
        if len(parts) == 6:
            break
    return "; ".join(parts)


def _dial_failure(peer: ID, error: BaseException) -> str:
    """Why a dial of `peer` failed, in one line an operator can act on."""
    if (actual := _answered_by(error)) is not None:
        return (f"the host there is {actual}, not {peer.to_base58()} (a node that rotated its key has a new peer id: "
                "a [p2p] bootstrap address of it needs the new one)")
    if any(isinstance(e, OSError) and e.errno == errno.ECONNREFUSED for e in _causes(error)):
        return "connection refused (nothing listens there)"
    return _reason(error)


def _answered_by(error: BaseException) -> str | None:
    """The peer id the dialled host proved it holds, if the dial failed because it is not the one dialled (a node
    that rotated its key); py-libp2p says which only in its message."""
    for err in _causes(error):
        if isinstance(err, PeerIDMismatchesPubkey):
            found = re.search(r"remote_peer_id_from_pubkey=(\w+)", str(err))
            return found[1] if found else "another peer id"
    return None


class _Closes:
    """The closes a caller's cancellation must not cut off (a disconnect's or a block's, quirk 60; a stream's reset,
    quirk 61), shielded from it, and cut off all at once as the host stops (`stop`): its exit closes every connection
    anyway, and a peer that reads nothing would hold each for its timeout, the stop waiting."""

    def __init__(self) -> None:
        self._scopes: set[trio.CancelScope] = set()  # those under way
        self.stopping = False

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """A close shielded from the caller's cancellation, until the host stops (from then on, not shielded)."""
        with trio.CancelScope(shield=not self.stopping) as scope:
            self._scopes.add(scope)
            try:
                yield
            finally:
                self._scopes.discard(scope)

    def stop(self) -> None:
        """The host stops: cut off the closes under way, and shield none from now on."""
        self.stopping = True
        for scope in self._scopes:
            scope.cancel()


class Stream:
    """A stream to one peer on one protocol. Use as `async with`: closed on exit, reset on an exception.

    read() returns b"" at end of stream, like trio's receive_some(). Reads block until the peer sends, so
    wrap them in trio.fail_after() when talking to a peer that may stall.
    """

    def __init__(self, stream: INetStream, remote_peer: str, protocol: str, *, closes: _Closes | None = None,
                 reset_timeout: float = 5.0) -> None:
        self._stream = stream
        self._closes = closes or _Closes()  # the host's: a reset is cut off as it stops
        self._reset_timeout = reset_timeout  # (HostConfig.close_timeout)
        self._buffer = bytearray()
        self._write_lock = trio.Lock()  # quirk 18: one write's frames must not interleave with another's
        self.remote_peer = remote_peer
        self.protocol = protocol

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.reset()

    async def read(self, max_bytes: int = _READ_CHUNK) -> bytes:
        """Up to `max_bytes` bytes as soon as any arrive; b"" once the peer closed its side."""
        if max_bytes < 1:
            raise ValueError("read() needs max_bytes >= 1")
        if self._buffer:
            chunk = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            return chunk
        return await self._receive(max_bytes)

    async def write(self, data: bytes) -> None:
        """Send all of `data`; concurrent writes to one stream go out one after the other, never interleaved."""
        try:
            async with self._write_lock:
                await self._stream.write(data)
        except (lp_stream.StreamError, IOException) as error:
            raise StreamError(
                f"{self.protocol} stream to {self.remote_peer}: write failed: {_reason(error)}") from error

    async def read_frame(self, max_size: int) -> bytes | None:
        """The next length-prefixed frame, or None if the peer closed the stream between frames.

        Raises FrameError (a ValueError) for a frame longer than `max_size` or a malformed length prefix: the peer's
        fault. A stream that ends inside a frame raises StreamError instead, as one that is reset does: a peer that
        stops or loses its connection mid-frame looks the same as one that cuts a frame short.
        """
        while (header := parse_frame_header(self._buffer, max_size)) is None:
            chunk = await self._receive(_READ_CHUNK)
            if not chunk:
                if self._buffer:
                    raise StreamError(f"{self.protocol} stream from {self.remote_peer}: ended inside a frame length "
                                      "prefix")
                return None
            self._buffer += chunk
        length, start = header
        while len(self._buffer) < start + length:
            chunk = await self._receive(max(_READ_CHUNK, start + length - len(self._buffer)))
            if not chunk:
                raise StreamError(f"{self.protocol} stream from {self.remote_peer}: ended after "
                                  f"{len(self._buffer) - start} of {length} frame bytes")
            self._buffer += chunk
        frame = bytes(self._buffer[start:start + length])
        del self._buffer[:start + length]
        return frame

    async def write_frame(self, payload: bytes) -> None:
        await self.write(encode_frame(payload))

    async def close(self) -> None:
        """Finish the stream politely; a stream that already broke is simply released."""
        try:
            await self._stream.close()
        except Exception as error:  # closing a dead stream is not the caller's problem
            logger.debug("closing %s stream to %s: %s", self.protocol, self.remote_peer, _reason(error))

    async def reset(self) -> None:
        """Abort the stream: the peer's reads and writes fail at once; in a cancelled scope too (quirk 61), but for
        the host's stop, which closes the connection (a peer not reading would hold the reset's write)."""
        with self._closes.shielded(), trio.move_on_after(self._reset_timeout):
            await self._stream.reset()  # NetStream.reset never raises but Cancelled: it marks the stream reset

    async def _receive(self, max_bytes: int) -> bytes:
        try:
            data = await self._stream.read(max_bytes)
        except lp_stream.StreamEOF:
            data = b""
        except (lp_stream.StreamError, IOException) as error:
            raise StreamError(
                f"{self.protocol} stream from {self.remote_peer}: read failed: {_reason(error)}") from error
        if not data and _reset_by_peer(self._stream):  # quirk 14
            raise StreamError(f"{self.protocol} stream from {self.remote_peer}: reset by the peer")
        return data


class _GossipSub(GossipSub):
    """GossipSub that backs off from every peer it prunes, grafts only BACKOFF_SLACK_S after a backoff ends
    (quirk 20), grafts opportunistically as the spec says (quirk 22), reads no more control than go-libp2p does
    (quirks 37, 57) and no message id longer than a vouchnet one (quirks 55, 56), answers IWANTs for a message as often
    as go-libp2p does (quirks 39, 57), keeps no time per message routed (quirk 41), forgets backoffs once over (quirk
    42), keeps no copy of the messages it routed (quirk 47) and keeps a penalised peer's score across a reconnection
    (quirk 48) and ignores the gossip of a peer scoring below the gossip threshold (quirk 58); nothing else differs."""

    def __init__(self, *, retained: _RetainedScores, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.scorer = _RetainingScorer(self.scorer.params, retained, lambda: self.peer_protocol)  # quirk 48
        self.mesh_prunes = 0  # HostStats.mesh_prunes
        self.control_dropped = 0  # HostStats.control_dropped
        self.pending_dropped = 0  # HostStats.pending_dropped
        self._sent_on_iwant: dict[bytes, Counter[ID]] = {}  # cached message id -> peer -> times sent (quirk 39)
        self._ihave_rpcs: Counter[ID] = Counter()  # RPCs of IHAVEs read from a peer this heartbeat (quirk 57)
        self._ihave_asked: Counter[ID] = Counter()  # ids asked of a peer on its IHAVEs this heartbeat (quirk 57)
        self._grafting = False  # inside mesh_heartbeat, which chooses the peers to graft
        self._heartbeats = 0

    def _prune_pending_messages(self, peer_id: ID) -> None:
        """The library's, its drops past the queue's limit counted (quirk 59): of the messages it still holds for the
        peer (not expired), those past the limit."""
        now = time.time()
        held = sum(now - queued <= self._pending_messages_ttl for queued, _ in self._pending_messages.get(peer_id, ()))
        self.pending_dropped += max(0, held - self._max_pending_messages_per_peer)
        super()._prune_pending_messages(peer_id)

    def mesh_heartbeat(self) -> tuple[defaultdict[ID, list[str]], defaultdict[ID, list[str]]]:
        self._heartbeats += 1
        self._grafting = True
        try:
            to_graft, to_prune = super().mesh_heartbeat()
        finally:
            self._grafting = False
        for peer, topics in to_prune.items():
            for topic in topics:
                self._add_back_off(peer, topic, False)
                self.mesh_prunes += 1
        self._ihave_rpcs.clear()  # quirk 57: go-libp2p's clearIHaveCounters
        self._ihave_asked.clear()
        for message_id in [m for m in self._sent_on_iwant if self.mcache.get(m) is None]:
            del self._sent_on_iwant[message_id]  # gone from the cache: never sent again
        self.recent_message_deliveries.clear()  # quirk 41: read by adaptive gossip only, which is off
        _forget_backoffs(self.back_off, time.time())  # quirk 42
        return to_graft, to_prune

    def add_peer(self, peer_id: ID, protocol_id: TProtocol | None) -> None:
        super().add_peer(peer_id, protocol_id)
        self.scorer.returned(peer_id)  # quirk 48

    async def handle_rpc(self, rpc: rpc_pb2.RPC, sender_peer_id: ID) -> None:
        self.control_dropped += _trim_control(rpc.control, self.mesh.keys())  # quirk 37
        self.control_dropped += _drop_long_message_ids(rpc.control)  # quirks 55, 56
        for prune in rpc.control.prune:  # quirk 42
            prune.backoff = min(prune.backoff, MAX_PRUNE_BACKOFF_S)
        if (rpc.control.ihave or rpc.control.iwant) and (
                self.scorer.score(sender_peer_id, list(self.mesh)) < self.scorer.params.gossip_threshold):
            self.control_dropped += _drop_gossip(rpc.control)  # quirk 58
        if rpc.control.ihave:
            self._budget_ihave(rpc.control, sender_peer_id)
        if rpc.control.iwant:  # one, after _trim_control
            self._limit_retransmissions(rpc.control.iwant[0], sender_peer_id)
        await super().handle_rpc(rpc, sender_peer_id)

    def _budget_ihave(self, control: rpc_pb2.ControlMessage, peer: ID) -> None:
        """Quirk 57, go-libp2p's handleIHave: read the IHAVEs of `peer`'s first MAX_IHAVE_MESSAGES RPCs carrying any
        this heartbeat, and keep from them only the unseen ids to ask for, each once, until MAX_IHAVE_LENGTH were asked
        of the peer this heartbeat; the rest of the unseen ids, repeats and ids py-libp2p cannot read count in
        control_dropped."""
        self._ihave_rpcs[peer] += 1
        room = MAX_IHAVE_LENGTH - self._ihave_asked[peer] if self._ihave_rpcs[peer] <= MAX_IHAVE_MESSAGES else 0
        seen = self.pubsub.seen_messages if self.pubsub is not None else None
        asked: set[bytes] = set()
        for entry in control.ihave:  # each kept, emptied or not: py-libp2p's rate limit counts it (and penalises)
            kept = []
            for wire_id in entry.messageIDs:
                message_id = safe_bytes_from_hex(wire_id)
                if message_id is not None and seen is not None and seen.has(message_id):
                    continue  # not asked for, as py-libp2p would not: nothing dropped
                if message_id is None or message_id in asked or len(asked) == room:
                    self.control_dropped += 1
                    continue
                asked.add(message_id)
                kept.append(wire_id)
            del entry.messageIDs[:]
            entry.messageIDs.extend(kept)
        self._ihave_asked[peer] += len(asked)

    def _limit_retransmissions(self, iwant: rpc_pb2.ControlIWant, peer: ID) -> None:
        """Quirk 39: keep the ids of cached messages sent to `peer` on IWANT fewer than GOSSIP_RETRANSMISSION times,
        counting them as sent (ids of messages not cached cost nothing and stay); quirk 57: each id once, none that
        py-libp2p cannot read."""
        kept = []
        wanted: set[bytes] = set()
        for wire_id in iwant.messageIDs:
            message_id = safe_bytes_from_hex(wire_id)
            if message_id is None or message_id in wanted:
                continue
            wanted.add(message_id)
            if self.mcache.get(message_id) is None:
                kept.append(wire_id)
                continue
            sent = self._sent_on_iwant.setdefault(message_id, Counter())
            if sent[peer] < GOSSIP_RETRANSMISSION:
                sent[peer] += 1
                kept.append(wire_id)
        self.control_dropped += len(iwant.messageIDs) - len(kept)
        del iwant.messageIDs[:]
        iwant.messageIDs.extend(kept)

    async def emit_prune(self, topic: str, to_peer: ID, do_px: bool, is_unsubscribe: bool) -> None:
        self._add_back_off(to_peer, topic, is_unsubscribe)
        await super().emit_prune(topic, to_peer, do_px, is_unsubscribe)

    def _perform_opportunistic_grafting(self, topic: str, peers_to_graft: defaultdict[ID, list[str]]) -> int:
        """GossipSub v1.1 opportunistic grafting (quirk 22): every OPPORTUNISTIC_GRAFT_TICKS heartbeats, if the
        median score of the mesh is below OPPORTUNISTIC_GRAFT_THRESHOLD, graft up to OPPORTUNISTIC_GRAFT_PEERS
        peers that score above that median."""
        if self._heartbeats % OPPORTUNISTIC_GRAFT_TICKS or self.pubsub is None:
            return 0
        mesh = self.mesh[topic]
        median = statistics.median(self.scorer.score(peer, [topic]) for peer in mesh) if mesh else 0.0
        if median >= OPPORTUNISTIC_GRAFT_THRESHOLD:
            return 0
        better = [peer for peer in self.pubsub.peer_topics.get(topic, ()) if peer not in mesh
                  and peer not in self.direct_peers and self.supports_scoring(peer)
                  and not self._check_back_off(peer, topic) and self.scorer.score(peer, [topic]) > median]
        chosen = _RANDOM.sample(better, min(OPPORTUNISTIC_GRAFT_PEERS, len(better)))
        for peer in chosen:
            mesh.add(peer)
            self._notify_mesh_peer_added(peer, topic)
            self.scorer.on_join_mesh(peer, topic)
            peers_to_graft[peer].append(topic)
        return len(chosen)

    def _check_equivocation(self, msg: rpc_pb2.Message) -> bool:
        """Quirk 47: keep no copy of the message to compare a later one of its id with; the message passes."""
        return True

    def _check_back_off(self, peer: ID, topic: str) -> bool:
        """A backoff lasts BACKOFF_SLACK_S longer for choosing whom to graft than for refusing a GRAFT (as in
        go-libp2p): the peer at the other end counts the same backoff from a PRUNE that reached one of the two
        seconds after the other, so whoever grafts first must not be early for the other."""
        if self._grafting and self.back_off.get(topic, {}).get(peer, -math.inf) + BACKOFF_SLACK_S > time.time():
            return True
        return super()._check_back_off(peer, topic)


def _forget_backoffs(back_off: dict[str, dict[ID, int]], now: float) -> None:
    """Quirk 42: drop the backoffs that ended BACKOFF_SLACK_S or more before `now` (over for grafting too, quirk
    20), and the topics left with none."""
    for topic in list(back_off):
        peers = back_off[topic]
        for peer in [peer for peer, until in peers.items() if until + BACKOFF_SLACK_S <= now]:
            del peers[peer]
        if not peers:
            del back_off[topic]


def _trim_control(control: rpc_pb2.ControlMessage, topics: Iterable[str]) -> int:
    """Quirk 37: drop a control message's GRAFTs, PRUNEs and IHAVEs for topics not in `topics`, GRAFTs and PRUNEs
    repeating a topic, IHAVEs past
    MAX_IHAVE_MESSAGES, and message ids past MAX_IHAVE_LENGTH in its IHAVEs and in its IWANTs, which become one
    IWANT; returns how many GRAFTs, PRUNEs and message ids were dropped."""
    joined = set(topics)
    before = len(control.graft) + len(control.prune) + sum(len(entry.messageIDs)
                                                           for entry in (*control.ihave, *control.iwant))
    for entries in (control.graft, control.prune):
        kept = list({entry.topicID: entry for entry in entries if entry.topicID in joined}.values())  # one a topic
        del entries[:]
        entries.extend(kept)
    ihave: list[rpc_pb2.ControlIHave] = []
    room = MAX_IHAVE_LENGTH
    for entry in control.ihave:
        if entry.topicID in joined and len(ihave) < MAX_IHAVE_MESSAGES and room > 0:
            ihave.append(rpc_pb2.ControlIHave(topicID=entry.topicID, messageIDs=entry.messageIDs[:room]))
            room -= len(ihave[-1].messageIDs)
    del control.ihave[:]
    control.ihave.extend(ihave)
    wanted = [message_id for entry in control.iwant for message_id in entry.messageIDs][:MAX_IHAVE_LENGTH]
    del control.iwant[:]
    if wanted:
        control.iwant.add(messageIDs=wanted)
    return before - (len(control.graft) + len(control.prune) + MAX_IHAVE_LENGTH - room + len(wanted))


def _drop_gossip(control: rpc_pb2.ControlMessage) -> int:
    """Quirk 58: drop a control message's IHAVEs and IWANTs (GossipSub v1.1: gossip from a peer scoring below the
    gossip threshold is ignored); returns how many message ids were dropped."""
    dropped = sum(len(entry.messageIDs) for entry in (*control.ihave, *control.iwant))
    del control.ihave[:]
    del control.iwant[:]
    return dropped


def _drop_long_message_ids(control: rpc_pb2.ControlMessage) -> int:
    """Quirks 55 and 56: drop a control message's IHAVE, IWANT and IDONTWANT ids longer than MAX_MESSAGE_ID_LENGTH,
    which no vouchnet message id (GossipSub's default, from || seqno) is; returns how many were dropped."""
    dropped = 0
    for entry in (*control.ihave, *control.iwant, *control.idontwant):
        kept = [message_id for message_id in entry.messageIDs if len(message_id) <= MAX_MESSAGE_ID_LENGTH]
        dropped += len(entry.messageIDs) - len(kept)
        del entry.messageIDs[:]
        entry.messageIDs.extend(kept)
    return dropped


_TOPIC_COUNTERS = ("time_in_mesh", "first_message_deliveries", "mesh_message_deliveries", "invalid_messages")
_PEER_COUNTERS = ("behavior_penalty", "app_specific_scores", "graft_flood_penalties", "iwant_spam_penalties",
                  "ihave_spam_penalties", "equivocation_penalties")


def _move_counters(peer: ID, source: PeerScorer, target: PeerScorer) -> None:
    """Quirk 48: move `peer`'s counters from `source` to `target`, added to any it has there; those that are 0 are
    dropped (py-libp2p's score() makes one in every table for each peer it scores)."""
    for name in _TOPIC_COUNTERS:
        for topic, value in getattr(source, name).pop(peer, {}).items():
            if value:
                getattr(target, name)[peer][topic] += value
    for name in _PEER_COUNTERS:
        value = getattr(source, name).pop(peer, 0.0)
        if value:
            getattr(target, name)[peer] += value


class _RetainedScores:
    """GossipSub v1.1 RetainScore (quirk 48): the disconnected peers whose score a host keeps, each until its period
    is over, at most `cap` of them. Only a negative score is kept (a stranger's fresh key starts at 0, so keeping
    more is no use); a kept score is frozen until the peer returns, so when full the peer whose score when it left is
    the least negative goes, of two equal scores the older. A flood of fresh keys must then each be penalised further
    than a peer to push its score out."""

    def __init__(self, period: float, cap: int, clock: Callable[[], float] = trio.current_time) -> None:
        self._period = period
        self._cap = cap
        self._clock = clock
        self._until: dict[ID, float] = {}  # in the order retained, so in order of expiry
        self._score: dict[ID, float] = {}  # the score when it left, also in the order retained

    def __len__(self) -> int:
        return len(self._until)

    def __contains__(self, peer: object) -> bool:
        return peer in self._until

    def retain(self, peer: ID, score: float) -> list[ID]:
        """`peer` left scoring `score`: keep it for the period if that is negative and keeping is on; returns the
        peers whose counters are to go now (`peer` itself if not kept, or the one it pushed out)."""
        self._forget(peer)
        if score >= 0 or not self._period or not self._cap:
            return [peer]
        self._until[peer] = self._clock() + self._period
        self._score[peer] = score
        if len(self._score) <= self._cap:
            return []
        least = max(self._score, key=self._score.__getitem__)  # the first of equals: the older
        self._forget(least)
        return [least]

    def returned(self, peer: ID) -> bool:
        """`peer` is connected again, so no longer retained; whether its counters are out of date (it came back
        after its period, before a heartbeat forgot them)."""
        until = self._until.get(peer, math.inf)
        self._forget(peer)
        return until <= self._clock()

    def heartbeat(self) -> list[ID]:
        """A heartbeat: the peers whose period is over, no longer retained, their counters to go."""
        now = self._clock()
        over = []
        for peer, until in self._until.items():
            if until > now:
                break
            over.append(peer)
        for peer in over:
            self._forget(peer)
        return over

    def _forget(self, peer: ID) -> None:
        self._until.pop(peer, None)
        self._score.pop(peer, None)


class _RetainingScorer(PeerScorer):
    """py-libp2p's scorer, which forgot a peer's counters as it disconnected (GossipSub.remove_peer calls
    remove_peer), keeping them while _RetainedScores retains the peer (quirk 48). They are moved out of the tables
    the heartbeat decays, so they stay as they were while the peer is away (as in go-libp2p and rust-libp2p), judge
    its RPCs as soon as it reconnects, and decay again once it is back. The heartbeat also forgets counters of peers
    neither connected (`connected`, the router's peers) nor retained: a penalty, or score(), after a peer left."""

    def __init__(self, params: ScoreParams, retained: _RetainedScores,
                 connected: Callable[[], Container[ID]]) -> None:
        super().__init__(params)
        self.retained = retained
        self.away = PeerScorer(params)  # the retained peers' counters, which no heartbeat decays
        self._connected = connected

    def remove_peer(self, peer: ID) -> None:
        self.remove_peer_ip(peer)  # colocation counts connected peers
        gone = self.retained.retain(peer, super().score(peer, self._topics(peer)))
        for other in gone:
            super().remove_peer(other)
            self.away.remove_peer(other)
        if peer not in gone:
            _move_counters(peer, self, self.away)

    def returned(self, peer: ID) -> None:
        """`peer` connected again: its counters, if retained, are its own again; forgotten if kept past the period."""
        if self.retained.returned(peer):
            self.away.remove_peer(peer)
        else:
            _move_counters(peer, self.away, self)

    def score(self, peer: ID, topics: list[str]) -> float:
        """A retained peer's frozen score, also between its reconnection and the router's add_peer (its RPCs may be
        read first, quirk 45); any other peer's as py-libp2p counts it."""
        if peer in self.retained:
            return self.away.score(peer, topics)
        return super().score(peer, topics)

    def on_heartbeat(self, dt_seconds: float = 1.0) -> None:
        super().on_heartbeat(dt_seconds)  # the connected peers' counters: the retained are in self.away
        for peer in self.retained.heartbeat():
            self.away.remove_peer(peer)
        connected = self._connected()
        stale = {peer for name in (*_TOPIC_COUNTERS, *_PEER_COUNTERS) for peer in getattr(self, name)
                 if peer not in connected}
        for peer in stale:
            super().remove_peer(peer)

    def _topics(self, peer: ID) -> list[str]:
        """The topics `peer` has counters in (read without adding the peer to the scorer's defaultdicts)."""
        return sorted({topic for name in _TOPIC_COUNTERS for topic in getattr(self, name).get(peer, ())})


class _Ignored(Exception):
    """A remote message judged IGNORE (quirk 28): raised by _Pubsub.validate_msg, caught by _Pubsub.push_msg."""


class _Pubsub(Pubsub):
    """Pubsub with the overrides that quirks 8, 11, 12, 13, 27-30, 45, 46, 51, 53 and 54 need; none of them changes
    what a peer receives."""

    def __init__(
        self,
        host: BasicHost,
        router: GossipSub,
        judge: Callable[[ID, rpc_pb2.Message], Verdict],
        deliver: Callable[[rpc_pb2.Message], None],
        on_hostile: Callable[[ID, str], None],
    ) -> None:
        super().__init__(host, router, strict_signing=True)
        self.counter = time.time_ns()  # quirk 54: the seqno of our next message, less one, as go-libp2p starts it
        self._judge = judge
        self._deliver = deliver
        self._on_hostile = on_hostile
        self._queue_drained = trio.Event()
        self._write_locks: weakref.WeakKeyDictionary[INetStream, trio.Lock] = weakref.WeakKeyDictionary()
        self.graylisted_rpcs = 0  # HostStats.graylisted_rpcs
        self._refused_subscribers: set[ID] = set()  # peers whose refused subscriptions were reported (quirk 46)
        self._stale_streams: weakref.WeakSet[INetStream] = weakref.WeakSet()  # on a closed connection (quirk 53)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        self._deliver(publish_message)  # quirk 13: into our own, larger, counted channels

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if msg_forwarder == self.my_id:  # from our own publish(), which has just signed it
            token = _SIGNED_HERE.set(msg)  # quirk 29
            try:
                await super().push_msg(msg_forwarder, msg)
            finally:
                _SIGNED_HERE.reset(token)
            return
        try:
            await super().push_msg(msg_forwarder, msg)
        except _Ignored:
            pass  # quirk 28: dropped before push_msg marked it seen, scored it or relayed it
        except Exception as error:  # quirk 11: a malformed remote message must not stop the service
            self._on_hostile(msg_forwarder, f"pubsub message: {_reason(error)}")
            for topic in msg.topicIDs:
                self.router.scorer.on_invalid_message(msg_forwarder, topic)

    async def validate_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        """Quirks 27 and 28: the host's verdict, asked afresh for every message; push_msg penalises the forwarder
        for a ValidationError, and lets _Ignored through to our push_msg."""
        verdict = self._judge(msg_forwarder, msg)
        if verdict is Verdict.IGNORE:
            raise _Ignored
        if verdict is not Verdict.ACCEPT:
            raise ValidationError(f"rejected by the topic validator: message from {msg_forwarder}")

    async def continuously_read_stream(self, stream: INetStream) -> None:
        token = _READING.set(self)  # quirk 45: for _IgnoreGraylisted, called on each RPC this task reads
        try:
            await super().continuously_read_stream(stream)
        finally:
            _READING.reset(token)

    def ignore_if_graylisted(self, rpc: rpc_pb2.RPC, peer: ID) -> bool:
        """Whether `rpc` is ignored entirely, its peer scoring below graylist_threshold (GossipSub v1.1, quirk 45): if
        so it is emptied, and counted, before pubsub reads any of it."""
        scorer = self.router.scorer  # type: ignore[attr-defined]
        if scorer.score(peer, list(self.topic_ids)) >= scorer.params.graylist_threshold:
            return False
        self.graylisted_rpcs += 1
        rpc.Clear()
        return True

    def net_subscriptions(self, rpc: rpc_pb2.RPC) -> None:
        """Quirk 51: what the RPC's subscriptions change, as go-libp2p's FilterSubscriptions reads them: one entry a
        topic, none for a topic the RPC both subscribes and unsubscribes (in whichever order)."""
        if len(rpc.subscriptions) < 2:
            return
        net: dict[str, rpc_pb2.RPC.SubOpts] = {}
        for sub in rpc.subscriptions:
            earlier = net.get(sub.topicid)
            if earlier is None:
                net[sub.topicid] = sub
            elif earlier.subscribe != sub.subscribe:
                del net[sub.topicid]
        kept = [rpc_pb2.RPC.SubOpts(subscribe=sub.subscribe, topicid=sub.topicid) for sub in net.values()]
        del rpc.subscriptions[:]
        rpc.subscriptions.extend(kept)

    def _forget_subscription(self, peer_id: ID, topic: str) -> None:
        """Quirk 51: the topic's recent messages, sent to the peer once as it subscribed, are not sent again if it
        subscribes again while connected (py-libp2p forgot that it had sent them)."""
        replayed = topic in self._replayed_recent_topics.get(peer_id, ())
        super()._forget_subscription(peer_id, topic)
        if replayed:
            self._replayed_recent_topics.setdefault(peer_id, set()).add(topic)

    def handle_subscription(self, origin_id: ID, sub_message: rpc_pb2.RPC.SubOpts) -> None:
        """Quirk 46: a subscription to a topic longer than MAX_TOPIC_LENGTH, or to more than MAX_PEER_TOPICS topics,
        is dropped; the first of a peer's is counted as hostile input and logged."""
        topic = sub_message.topicid
        if sub_message.subscribe:
            if len(topic) > MAX_TOPIC_LENGTH:
                self._refuse_subscription(origin_id, f"subscription to a topic of {len(topic)} characters "
                                                     f"(at most {MAX_TOPIC_LENGTH})")
                return
            if (origin_id not in self.peer_topics.get(topic, ())
                    and self._peer_subscription_count.get(origin_id, 0) >= MAX_PEER_TOPICS):
                self._refuse_subscription(origin_id, f"subscription to more than {MAX_PEER_TOPICS} topics")
                return
        super().handle_subscription(origin_id, sub_message)

    def _refuse_subscription(self, peer: ID, what: str) -> None:
        """Count and log `peer`'s refused subscription as hostile input, once while it stays connected (the peers
        reported are pruned to those connected as the set grows)."""
        if peer not in self._refused_subscribers:
            self._refused_subscribers = {known for known in self._refused_subscribers if known in self.peers}
            self._refused_subscribers.add(peer)
            self._on_hostile(peer, what)

    async def stream_handler(self, stream: INetStream) -> None:
        try:
            await super().stream_handler(stream)
        except Exception as error:  # quirk 12: undecodable RPCs escape into the connection task
            await stream.reset()
            if not self.manager.is_running:
                return  # the service is stopping: its task nursery refuses new work, nobody misbehaved
            peer = stream.muxed_conn.peer_id
            self._on_hostile(peer, f"pubsub RPC stream: {_reason(error)}")
            self._handle_dead_peer(peer)

    async def handle_sending_messages(self, peer_id: ID, stream: INetStream, queue: RpcQueue) -> None:
        # The library's loop, plus a wake-up for publishers waiting for queue space (quirk 8), writing what has
        # queued up meanwhile as one RPC (quirk 30).
        try:
            rpc = await queue.pop()
            while rpc is not None:
                self._wake_publishers()
                following = None
                while len(queue) and (following := await queue.pop()) is not None:
                    if (len(rpc.publish) + len(following.publish) > 1
                            or rpc.ByteSize() + following.ByteSize() > queue.max_message_size):
                        break  # one message per RPC: a receiver handles an RPC's messages in no set order
                    rpc.MergeFrom(following)  # repeated fields append, in order; senderRecord is the same
                    following = None
                if not await self.write_msg(stream, rpc):
                    return
                rpc = following  # quirk 56: the RPC written is let go before the wait for the next
                if rpc is None:
                    rpc = await queue.pop()
        except Exception as error:
            logger.debug("pubsub sending loop for %s ended: %s", peer_id, _reason(error))
            self._handle_dead_peer(peer_id)
        finally:
            self._wake_publishers()

    async def write_msg(self, stream: INetStream, rpc_msg: rpc_pb2.RPC) -> bool:
        if stream in self._stale_streams:
            return False  # quirk 53: the library's failure path would forget the subscriptions and the new stream
        async with self._write_locks.setdefault(stream, trio.Lock()):  # quirk 18
            return await super().write_msg(stream, rpc_msg)

    async def _handle_new_peer(self, peer_id: ID) -> None:
        self._drop_stale_stream(peer_id)  # quirk 53: else the library keeps it and skips the new connection
        await super()._handle_new_peer(peer_id)

    async def handle_dead_peer_queue(self) -> None:
        """The library's loop (a peer is gone once none of its connections is open), and quirk 53: a peer still
        connected whose pubsub stream was on the connection that closed gets a stream on the open one."""
        async with self.dead_peer_receive_channel:
            self.event_handle_dead_peer_queue_started.set()
            async for peer_id in self.dead_peer_receive_channel:
                if not self._peer_is_connected(peer_id):
                    self._handle_dead_peer(peer_id)
                elif self._drop_stale_stream(peer_id):
                    self._schedule_peer_stream_retry(peer_id)

    def _drop_stale_stream(self, peer: ID) -> bool:
        """Quirk 53: unregister `peer`'s outbound pubsub stream if its connection closed (its sending loop ends, the
        router forgets the peer's mesh places), keeping the subscriptions it announced; whether there was one."""
        stream = self.peers.get(peer)
        if stream is None or not stream.muxed_conn.is_closed:
            return False
        self._stale_streams.add(self.peers.pop(peer))
        if (queue := self.peer_queues.pop(peer, None)) is not None:
            queue.close()
        self.router.remove_peer(peer)
        return True

    def peers_with_full_queues(self, limit: int) -> list[ID]:
        return [peer for peer, queue in self.peer_queues.items() if len(queue) > limit]

    async def queue_drained(self) -> None:
        """Returns after any peer's sending loop took an RPC off its queue or ended."""
        await self._queue_drained.wait()

    def _wake_publishers(self) -> None:
        self._queue_drained.set()
        self._queue_drained = trio.Event()


class _IdleInbound:
    """Quirk 34: closes each inbound connection still not in use (`in_use(peer)`) `grace` seconds after it opened,
    and the oldest such connection, grace or not, to give its slot to a new one when every slot is taken; without
    one, the oldest connection still in its handshake (quirk 38)."""

    def __init__(self, grace: float, in_use: Callable[[ID], bool], close_timeout: float) -> None:
        self._grace = grace
        self._in_use = in_use
        self._close_timeout = close_timeout
        self._pending: dict[INetConn, float] = {}  # inbound connections in their grace -> its end, oldest first
        self._arrived = trio.Event()
        self._nursery: trio.Nursery | None = None  # where connections are closed, while run() runs
        self._handshakes: dict[IRawConnection, None] = {}  # inbound connections in their handshake, oldest first
        self.closed = 0
        self.handshakes_aborted = 0

    def opened(self, conn: INetConn) -> None:
        self._pending[conn] = trio.current_time() + self._grace
        self._arrived.set()

    def gone(self, conn: INetConn) -> None:
        self._pending.pop(conn, None)

    @contextlib.contextmanager
    def handshaking(self, raw_conn: IRawConnection) -> Iterator[None]:
        """An inbound connection's handshake, which evict_one may abort (quirk 38)."""
        self._handshakes[raw_conn] = None
        try:
            yield
        finally:
            self._handshakes.pop(raw_conn, None)

    async def run(self) -> None:
        """Check each connection as its grace ends (they end in the order they began); runs until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                while True:
                    if not self._pending:
                        self._arrived = trio.Event()
                        await self._arrived.wait()
                        continue
                    conn, ends = next(iter(self._pending.items()))
                    await trio.sleep_until(ends)  # (if it goes meanwhile, every later one ends later)
                    if self._pending.pop(conn, None) is not None and self._idle(conn):
                        nursery.start_soon(self._close, conn, f"not put to use within {self._grace:g} s")
            finally:
                self._nursery = None  # a connection arriving as the host stops is refused, not let in

    def evict_one(self) -> bool:
        """Start closing the oldest inbound connection not in use, if there is one: its slot goes to a new one."""
        if self._nursery is None:
            return False
        oldest = next((conn for conn in self._pending if self._idle(conn)), None)
        if oldest is not None:
            del self._pending[oldest]
            self._nursery.start_soon(self._close, oldest, "not in use, its slot given to a new inbound connection")
            return True
        stalled = next(iter(self._handshakes), None)
        if stalled is None:
            return False
        del self._handshakes[stalled]
        self.handshakes_aborted += 1
        self._nursery.start_soon(self._abort, stalled)
        return True

    def _idle(self, conn: INetConn) -> bool:
        return not conn.is_closed and not self._in_use(conn.muxed_conn.peer_id)

    async def _abort(self, raw_conn: IRawConnection) -> None:
        logger.debug("closing an inbound connection in its handshake: its slot goes to a new inbound connection")
        with trio.move_on_after(self._close_timeout):
            await raw_conn.close()  # the handshake's next read fails, and its task ends

    async def _close(self, conn: INetConn, why: str) -> None:
        self.closed += 1
        logger.info("closing the inbound connection of %s: %s", conn.muxed_conn.peer_id, why)
        await _close_connection(conn, self._close_timeout)


async def _close_connection(conn: INetConn, timeout: float) -> None:
    """Close `conn` within `timeout` seconds; a close cut off by it is finished as SwarmConn.close's would have been
    (quirk 60): the socket closed, the connection off the swarm's list, its disconnection notified. The close is this
    host's (PeerEvent.closed_here) from its start, cut off before SwarmConn.close reached the muxer's or not. Cancelled
    (the host stops: Host._cut_closes_when_stopping), its socket is closed all the same: the swarm's own stop closes
    only connections not closing yet, and the peer would see this host go only as its writes timed out."""
    if isinstance(conn.muxed_conn, _Yamux):
        conn.muxed_conn.closing_here()
    async with _socket_closed_if_cancelled(conn, timeout):
        with trio.move_on_after(timeout):
            await conn.close()
            return
    swarm: Swarm = conn.swarm  # type: ignore[attr-defined]  # every connection of a host is a SwarmConn
    logger.debug("the close of a connection of %s was cut off after %g s; finishing it", conn.muxed_conn.peer_id,
                 timeout)
    swarm.remove_conn(conn)  # type: ignore[arg-type]
    with trio.CancelScope(shield=True), trio.move_on_after(timeout):
        await _close_socket(conn)
        await swarm.notify_disconnected(conn)


@contextlib.asynccontextmanager
async def _socket_closed_if_cancelled(conn: INetConn, timeout: float) -> AsyncIterator[None]:
    """A close of `conn` that, cancelled, closes its socket all the same (within `timeout`), shielded: the peer sees
    this host go at once, not as its writes to it time out."""
    try:
        yield
    except trio.Cancelled:
        with trio.CancelScope(shield=True), trio.move_on_after(timeout):
            await _close_socket(conn)
        raise


async def _close_socket(conn: INetConn) -> None:
    """Close `conn`'s socket, unless its muxer closed it: the reader's task ends."""
    if not conn.muxed_conn.is_closed:
        conn.muxed_conn.event_shutting_down.set()  # this host's close goes out: the read that fails is not the peer's
        # end of the connection (quirk 63)
        with contextlib.suppress(Exception):
            await conn.muxed_conn.secured_conn.close()  # type: ignore[attr-defined]


class _InboundSlots:
    """Quirk 34: the swarm's inbound slots, in place of its trio.CapacityLimiter (of which it calls acquire_nowait()
    and release() and reads total_tokens). With every slot taken, a new connection takes the slot of the oldest idle
    inbound connection (`evict_one`), which is closed and does not give it back; without one, it is refused."""

    def __init__(self, total_tokens: int, evict_one: Callable[[], bool]) -> None:
        self.total_tokens = total_tokens
        self._evict_one = evict_one
        self._taken = 0  # (total_tokens + the evictions under way, at most)

    def acquire_nowait(self) -> None:
        if self._taken >= self.total_tokens and not self._evict_one():
            raise trio.WouldBlock
        self._taken += 1

    def release(self) -> None:
        self._taken -= 1


class _WindowExceeded(Exception):
    """A yamux peer sent more than its receive windows allow (quirk 35); its connection is closed."""


class _OverBudget(Exception):
    """A yamux connection was closed for the node's budget of buffered bytes (quirk 44)."""


class _WakesWriters:
    """An attribute of a _YamuxStream whose every assignment wakes the writers waiting for its window credit (quirk
    65): the send window, and whether the stream is closed (both ways, or for sending)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, stream: _YamuxStream | None, owner: type | None = None) -> object:
        if stream is None:
            return self
        return stream.__dict__[self._name]

    def __set__(self, stream: _YamuxStream, value: object) -> None:
        stream.__dict__[self._name] = value
        stream.changed.set()


class _TellsClosing(_WakesWriters):
    """_WakesWriters for whether a _YamuxStream is closed both ways (by both ends, or a reset), which also tells the
    stream once it is (its connection's count of the streams the peer opened that are open, quirk 36)."""

    def __set__(self, stream: _YamuxStream, value: object) -> None:
        super().__set__(stream, value)
        if value:
            stream.closing()


class _YamuxStream(YamuxStream):
    """A yamux stream whose writes wait for window credit woken by it (the peer's WINDOW_UPDATE, or the stream's
    close), not by polling, for as long as the caller's deadline allows, or WINDOW_WAIT_S for a caller without one
    (quirk 65), and which, opened by the peer, counts itself among its connection's open streams until it is closed
    both ways or reset (quirk 36); nothing else differs."""

    send_window = _WakesWriters()
    closed = _TellsClosing()
    send_closed = _WakesWriters()

    def __init__(self, stream_id: int, conn: Yamux, is_initiator: bool) -> None:
        # Set as the send window or the stream's closing changes (before they are set); replaced only once set, so
        # that each writer waiting on one, however many write at once, is woken by the next change
        self.changed = trio.Event()
        self._counted_open = False  # counted in its connection's peer_streams_open (quirk 36)
        super().__init__(stream_id, conn, is_initiator)
        if not is_initiator and isinstance(conn, _Yamux):
            self._counted_open = True
            conn.peer_streams_open += 1

    def closing(self) -> None:
        """The stream is closed both ways, or reset: no longer open in its connection's count (quirk 36)."""
        if self._counted_open:
            self._counted_open = False
            self.conn.peer_streams_open -= 1  # type: ignore[attr-defined]  # (a _Yamux: counted it)

    async def write(self, data: bytes) -> None:
        """Send `data` in frames of at most a frame's payload, each within the send window (yamux spec)."""
        sent = 0
        while sent < len(data):
            if (changed := self.changed).is_set():
                changed = self.changed = trio.Event()  # (a change from here on ends the wait below at once)
            if not (size := await self._take_window(len(data) - sent)):
                await self._wait_for_credit(changed)
                continue
            header = struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_DATA, 0, self.stream_id, size)
            await self.conn._write_frame(header + data[sent:sent + size])
            sent += size

    async def _take_window(self, wanted: int) -> int:
        """Take from the send window the bytes of the next frame, at most `wanted`: none when it is empty;
        MuxedStreamError, as YamuxStream.write raises, once the stream is closed."""
        async with self.rw_lock.write_lock(), self.window_lock:
            if self.send_closed:
                raise MuxedStreamError("Stream is closed for sending")
            if self.closed:
                raise MuxedStreamError("Stream is closed")
            size = min(self.send_window, MAX_MESSAGE_SIZE - HEADER_SIZE, wanted)
            if size > 0:
                self.send_window -= size
            return max(size, 0)

    @staticmethod
    async def _wait_for_credit(changed: trio.Event) -> None:
        """Until the send window or the stream's closing changes (`changed` is set): within the caller's deadline, or
        WINDOW_WAIT_S if it set none (MuxedStreamError then, as YamuxStream.write raised after its 5 s)."""
        if trio.current_effective_deadline() < math.inf:
            await changed.wait()
            return
        with trio.move_on_after(WINDOW_WAIT_S):
            await changed.wait()
            return
        raise MuxedStreamError(f"no window credit from the peer within {WINDOW_WAIT_S:g} s")


# A yamux header as unpacked by YAMUX_HEADER_FORMAT: version, type, flags, stream id, length.
_HeaderFields = tuple[int, int, int, int, int]


class _Yamux(Yamux):
    """Yamux that holds the peer to the receive windows it was granted (quirk 35), to MAX_INBOUND_STREAMS open
    streams (quirk 36), to the host's budget across connections (quirk 44), to reading what it is sent within
    WRITE_TIMEOUT_S (quirk 49), to answering its pings (quirk 64) and to its budget of frames (quirk 68), and knows
    who closed it (closed_here, quirk 63); nothing else differs."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Told of hostile input: the host's counter once a notifee knows the connection, a warning before.
        self.on_hostile: Callable[[ID, str], None] = _warn_hostile
        self.budget: _NodeBudget | None = None  # the host's, once a notifee knows the connection (quirk 44)
        # Its close for its peer's silence counted, by UNRESPONSIVE_REASONS: in the host's, once a notifee knows it
        self.unresponsive: Counter[str] = Counter()
        self.held = 0  # bytes buffered, at most, as the budget last counted them (quirk 44)
        self.opened = 0  # streams the peer opened and has open, at most, as the budget last counted them (quirk 44)
        self.peer_streams_open = 0  # streams the peer opened, not closed both ways, as each counts itself (quirk 36)
        self.incoming = 0  # bytes of the DATA frame being read, which it will buffer (0: a frame's header is read)
        self._evicted = False  # closed to make room in the budget for another connection's frame (quirk 44)
        self._refused_streams = False
        self._refused_stream: int | None = None  # the stream header_read refused, its RST not yet written (quirk 67)
        self._ping_flood = False  # a ping of the peer's went unanswered, past MAX_PING_ANSWERS_PER_S (quirk 66)
        self._stalled = False  # a frame's write timed out, and the socket was closed (quirk 49)
        self.keepalive_timeout = KEEPALIVE_TIMEOUT_S  # seconds a ping may go unanswered, the peer quiet (quirk 64)
        self._heard_at = -math.inf  # trio time the reading task last read a frame's header (quirk 64)
        self._awaited_ping: int | None = None  # the value of this host's ping whose answer is awaited (quirk 64)
        self._ping_second, self._pings_answered = -math.inf, 0  # the second of trio's clock, and its answers (66)
        self._frames: TokenBuckets[str] = TokenBuckets(FRAMES_PER_S, FRAME_BURST, max_keys=1)  # (quirk 68)
        self._frame_flood = False  # the peer's frames ran past the budget, and its reading waited (quirk 68)
        self.closed_here = False  # this host closed the connection, not the peer or the network (PeerEvent)

    def inbound_open(self) -> int:
        """Streams the peer opened that are open (not closed by both ends, nor reset by either):
        counted by each as it opens and closes (_YamuxStream, where yamux builds its streams), not walked for at each
        SYN, which made each SYN cost the host as much as the streams the peer held open; walked for where yamux builds
        streams of another class."""
        if libp2p.stream_muxer.yamux.yamux.YamuxStream is _YamuxStream:
            return self.peer_streams_open
        theirs = self.next_stream_id % 2 ^ 1
        return sum(s.stream_id % 2 == theirs and not s.closed for s in self.streams.values())

    def buffered(self) -> int:
        """Bytes received and not yet read, all streams'."""
        return sum(map(len, self.stream_buffers.values()))  # (map: a walk in C, as _read_data_body's of the windows)

    def _admits_stream(self) -> bool:
        """Whether a stream the peer opens now is within MAX_INBOUND_STREAMS (quirk 36) and the host's budget (44)."""
        opened = self.inbound_open() + 1
        if opened <= MAX_INBOUND_STREAMS:
            return self.budget is None or self.budget.admit_stream(self, opened)
        if not self._refused_streams:
            self._refused_streams = True
            self.on_hostile(self.peer_id, f"more than {MAX_INBOUND_STREAMS} streams open at once on one "
                                          "connection; resetting the streams it opens past them")
        return False

    async def reset_refused(self) -> None:
        """Quirk 67: write the RST of the stream the header just read opened and header_read refused, if it did."""
        if self._refused_stream is not None:
            stream_id, self._refused_stream = self._refused_stream, None
            await self._write_frame(struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0))

    async def _read_data_body(self, length: int) -> bytes:
        buffered = self.buffered()
        allowed = DEFAULT_WINDOW_SIZE + sum(map(_TARGET_WINDOW, self.streams.values()))
        if buffered + length > allowed:
            what = (f"yamux DATA frame of {length} bytes past the receive windows ({buffered} of {allowed} bytes "
                    "buffered); connection closed")
            self.on_hostile(self.peer_id, what)
            await self.refuse(GO_AWAY_PROTOCOL_ERROR)
            raise _WindowExceeded(what)
        if self.budget is not None and not self.budget.make_room(self, buffered + length):
            await self.refuse(GO_AWAY_INTERNAL_ERROR)
            raise _OverBudget(f"connection of {self.peer_id} closed: the node's yamux buffers are over budget")
        self.incoming = length
        try:
            data = await super()._read_data_body(length)
        except trio.TooSlowError:  # py-libp2p closes the connection: the body did not come within its read timeout
            self.closing_here()
            raise
        finally:
            self.incoming = 0
        return b"" if self._evicted else data  # (read as it was closed for the budget: dropped, as it buffered)

    async def close(self, error_code: int = GO_AWAY_NORMAL) -> None:
        """Yamux.close, which py-libp2p calls for a connection this host closes (a disconnect, a block, a limit, its
        own shutdown) and again once the peer or the network closed it, the connection then shutting down already."""
        self.closing_here()
        await super().close(error_code)

    def closing_here(self) -> None:
        """This host closes the connection (closed_here), unless it is shutting down already."""
        if not self.event_shutting_down.is_set():
            self.closed_here = True

    def ended_there(self) -> None:
        """The peer or the network ended the connection (its GO_AWAY read, a read or a write failed) before this
        host's close of it went out (its GO_AWAY written or its socket closed, the connection then shutting down): not
        closed here, though that close had begun (quirk 63)."""
        if not self.event_shutting_down.is_set():
            self.closed_here = False

    async def handle_incoming(self) -> None:
        """py-libp2p's task reading the peer's frames, its header reads told to this connection (quirk 63)."""
        reading = _FRAMES_READ_BY.set(self)
        try:
            await super().handle_incoming()
        finally:
            _FRAMES_READ_BY.reset(reading)

    def header_read(self, header: bytes, fields: _HeaderFields, now: float) -> bytes:
        """Quirk 63: the reading task read a frame's `header` (unpacked: `fields`), held at trio time `now` (quirk 68):
        a GO_AWAY is the peer's end of the connection, and a DATA frame longer than py-libp2p takes (MAX_WINDOW_SIZE)
        has py-libp2p close it, this host's close of a hostile connection. Quirk 64: the peer was heard from, unless the
        frame is an answer to no ping awaited, which py-libp2p would take as the answer to any. Quirk 66: a ping past
        MAX_PING_ANSWERS_PER_S in a second is not answered. py-libp2p is given such a frame as a ping of neither kind,
        which it passes over. Quirk 67: a stream the peer opens past MAX_INBOUND_STREAMS or the host's budget is
        refused, py-libp2p given the frame without its flags (on a stream it does not know: a body read and dropped),
        so it neither ACKs nor builds the stream; the reading task then resets it (reset_refused). Returns the header
        py-libp2p reads."""
        version, kind, flags, stream_id, length = fields
        if kind == TYPE_PING and flags & (FLAG_SYN | FLAG_ACK) == FLAG_ACK:
            if length != self._awaited_ping:
                return struct.pack(YAMUX_HEADER_FORMAT, version, TYPE_PING, 0, 0, length)
            self._awaited_ping = None
        elif kind == TYPE_PING and flags & FLAG_SYN and not self._may_answer_ping(now):
            self._heard_at = now
            return struct.pack(YAMUX_HEADER_FORMAT, version, TYPE_PING, 0, 0, length)
        self._heard_at = now
        if kind == TYPE_GO_AWAY:
            self.ended_there()
        elif kind == TYPE_DATA and length > MAX_WINDOW_SIZE:
            self.closing_here()
            self.on_hostile(self.peer_id, f"yamux DATA frame of {length} bytes, past the largest receive window "
                                          f"({MAX_WINDOW_SIZE} bytes); connection closed")
        elif kind in (TYPE_DATA, TYPE_WINDOW_UPDATE) and flags & (FLAG_SYN | FLAG_RST) == FLAG_SYN and (
                stream_id not in self.streams and not self._admits_stream()):  # (py-libp2p resets a known id's SYN)
            self._refused_stream = stream_id
            return struct.pack(YAMUX_HEADER_FORMAT, version, kind, 0, stream_id, length)
        return header

    async def within_frame_budget(self, fields: _HeaderFields, now: float) -> float:
        """Quirk 68: return once the connection's budget of frames holds the frame whose header was just read
        (unpacked: `fields`) at trio time `now`, with the time it held it at (`now`, unless it waited): at once unless
        the peer sent FRAME_BURST frames faster than FRAMES_PER_S, reading nothing meanwhile: the peer's frames wait in
        the socket, and its writes once that is full. The first wait of the connection is counted as hostile input and
        logged. A DATA frame on a stream that is open counts less the more bytes it carries (what the peer may send
        there is bounded by the windows, quirk 35); one opening a stream, or on a stream not open (its bytes read and
        dropped), counts for one, as every other frame does. RawConnError once the connection closes meanwhile: the
        reading task ends there, as for a read that fails, the frame not handled."""
        _, kind, flags, stream_id, length = fields
        carries = kind == TYPE_DATA and not flags & FLAG_SYN and stream_id in self.streams
        cost = max(0.0, 1.0 - length / FULL_FRAME_BYTES) if carries else 1.0
        while not self._frames.try_take("frames", now, cost):
            if not self._frame_flood:
                self._frame_flood = True
                self.on_hostile(self.peer_id, f"more than {FRAMES_PER_S} yamux frames a second (a DATA frame of "
                                              f"{FULL_FRAME_BYTES} bytes or more on an open stream counting for "
                                              f"none); reading {FRAMES_PER_S} a second")
            with trio.move_on_after(self._frames.wait_time("frames", max(cost, FRAME_BURST / 20), now)):
                await self.event_shutting_down.wait()
                raise RawConnError(f"yamux connection of {self.peer_id} closed while its frames waited for the budget")
            now = trio.current_time()
        return now

    def _may_answer_ping(self, now: float) -> bool:
        """Quirk 66: whether a ping the peer sent at trio time `now` is answered, MAX_PING_ANSWERS_PER_S being answered
        in a second of trio's clock; the first not answered on the connection is counted as hostile input and
        logged."""
        second = math.floor(now)
        if second != self._ping_second:
            self._ping_second, self._pings_answered = second, 0
        self._pings_answered += 1
        if self._pings_answered <= MAX_PING_ANSWERS_PER_S:
            return True
        if not self._ping_flood:
            self._ping_flood = True
            self.on_hostile(self.peer_id, f"more than {MAX_PING_ANSWERS_PER_S} yamux pings a second; answering "
                                          f"{MAX_PING_ANSWERS_PER_S} a second")
        return False

    async def _write_frame(self, data: bytes) -> None:
        """Quirk 49 (go-yamux's ConnectionWriteTimeout), in place of py-libp2p's (writes in turn, then a checkpoint): a
        frame the socket does not take within WRITE_TIMEOUT_S means the peer reads nothing; the socket is closed, which
        ends every task writing or reading on the connection (those waiting for their turn included), and RawConnError
        raised (what py-libp2p's callers take as a connection gone). A write that fails marks the connection as shutting
        down, so the reading task ends it rather than read on; it failed as the peer or the network reset the
        connection (a write to a socket this host closed returns quietly), which is then the peer's end of it, this
        host's GO_AWAY not having gone out (quirk 63)."""
        async with self._write_lock:
            try:
                with trio.move_on_after(WRITE_TIMEOUT_S):
                    await self.secured_conn.write(data)
                    return
            except IOException:
                self.ended_there()
                self.event_shutting_down.set()
                raise
            if not self._stalled:
                self._stalled = True
                logger.warning("closing the connection of %s: the socket took no frame for %g s, the peer reads "
                               "nothing (quirk 49)", self.peer_id, WRITE_TIMEOUT_S)
                self.unresponsive["write_timeout"] += 1
                await self._hang_up()
        raise RawConnError(f"yamux connection of {self.peer_id}: a frame not written within {WRITE_TIMEOUT_S:g} s")

    async def _hang_up(self) -> None:
        """Close the connection here and now, no GO_AWAY first (the peer would not read it): its socket closed under
        its tasks, which end."""
        self.closing_here()
        self.event_shutting_down.set()
        with contextlib.suppress(Exception):
            await self.secured_conn.close()

    async def _measure_rtt_loop(self) -> None:
        """py-libp2p's pings (its RTT estimate, taken as each answer is read: the first half a second in, then one
        every KEEPALIVE_INTERVAL_S), each unanswered, the peer quiet, for `keepalive_timeout` closing the connection,
        as go-yamux's keepalive does (quirk 64)."""
        wait = 0.5
        while True:
            with trio.move_on_after(wait):
                await self.event_shutting_down.wait()
                return
            wait = KEEPALIVE_INTERVAL_S
            self._ping_id += 1
            self._ping_event = answered = trio.Event()  # (set by the reading task as this ping's answer comes)
            self._awaited_ping = self._ping_id
            self._ping_sent_time = trio.current_time()  # (before the write: its answer may be read as it returns)
            try:
                await self._write_frame(struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_PING, FLAG_SYN, 0, self._ping_id))
            except Exception:  # (the connection closed: its reading task ends it)
                return
            if await self._answered_or_heard_from(answered):
                continue
            if not self.event_shutting_down.is_set():
                logger.info("closing the connection of %s: no answer to a ping, nor any frame, within %g s (quirk 64)",
                            self.peer_id, self.keepalive_timeout)
                self.unresponsive["keepalive"] += 1
                await self._hang_up()
            return

    async def _answered_or_heard_from(self, answered: trio.Event) -> bool:
        """Whether the ping's answer came, the peer sending frames no more than `keepalive_timeout` apart until it did:
        the answer waits behind what the peer was writing (go-yamux pings only a connection quiet for its interval,
        as the answer "might get stuck behind a bunch of data"); False once the peer was quiet that long (quirk 64)."""
        deadline = trio.current_time() + self.keepalive_timeout
        while True:
            with trio.move_on_at(deadline):
                await answered.wait()
                return True
            deadline = self._heard_at + self.keepalive_timeout
            if deadline <= trio.current_time():
                return False

    async def refuse(self, code: int) -> None:
        """Close the connection, GO_AWAY `code` first, as for a broken one: buffers freed, streams woken, socket
        closed."""
        self.closing_here()
        self._drop_buffers()
        with contextlib.suppress(Exception):
            await self._write_frame(struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_GO_AWAY, 0, 0, code))
        await self._cleanup_on_error()

    def evict(self) -> None:
        """Quirk 44: free what the connection buffers now, and close it (refuse) in a task of its muxer: the frame of
        another connection that made room must not wait for this peer to read a GO_AWAY."""
        self._evicted = True
        self._drop_buffers()
        if self._nursery is not None:  # (set as the muxer starts, before the budget knows the connection)
            self._nursery.start_soon(self.refuse, GO_AWAY_INTERNAL_ERROR)

    def _drop_buffers(self) -> None:
        for buffer in self.stream_buffers.values():
            del buffer[:]


class _NodeBudget:
    """Quirk 44: the host's budget across its connections, as go-libp2p's resource manager keeps one for the whole
    system: streams peers opened and have open, and bytes yamux buffers. Strangers share all of each but a `reserve`
    share, which protected peers (the node's bootstrap peers and horizon) may take too, so strangers never starve
    them. A stream past the budget is reset; bytes past it close the stranger connections buffering the most,
    GO_AWAY first, until they fit (the connection they came on last, if it buffers the most)."""

    def __init__(self, streams: int, buffered: int, reserve: float, is_protected: Callable[[ID], bool]) -> None:
        self._streams, self._buffered, self._reserve = streams, buffered, reserve
        self._is_protected = is_protected
        # Connections whose muxer is running -> whether their peer was protected when last asked
        self._connections: weakref.WeakKeyDictionary[_Yamux, bool] = weakref.WeakKeyDictionary()
        self._held = 0  # the connections' `held`, summed: never less than the bytes they buffer
        self._opened = 0  # the connections' `opened`, summed: never less than the streams peers have open
        self._refusing = False  # whether the last stream opened was refused (a warning starts each such episode)
        self.streams_refused = 0
        self.connections_closed = 0

    def join(self, conn: _Yamux) -> None:
        self._connections[conn] = False
        conn.budget = self

    def admit_stream(self, conn: _Yamux, opened: int) -> bool:
        """Whether a stream `conn`'s peer just opened is within the budget, `opened` being the streams it has open
        with it; counts it if not (it is then reset)."""
        self._opened += opened - conn.opened
        conn.opened = opened
        if self._opened > self._share(self._streams):  # (streams closed since are counted until counted again)
            for other in self._live():
                if other is not conn:
                    other.opened = other.inbound_open()
            self._opened = sum(c.opened for c in self._connections)
        if self._opened <= self._share(self._streams) or (
                self._opened <= self._streams and self._protected(conn)):
            self._refusing = False
            return True
        conn.opened -= 1  # reset
        self._opened -= 1
        self.streams_refused += 1
        if not self._refusing:
            self._refusing = True
            logger.warning("resetting streams peers open: %d are open, the node's budget for strangers is %d of %d "
                           "(quirk 44)", self._opened, self._share(self._streams), self._streams)
        return False

    def make_room(self, conn: _Yamux, held: int) -> bool:
        """Whether `conn` may buffer `held` bytes, once the stranger connections buffering the most are closed to
        make room (_Yamux.evict); False if `conn` is to be closed itself, being one of them or closed already."""
        if conn not in self._connections:
            return False
        self._held += held - conn.held
        conn.held = held
        if self._held <= self._share(self._buffered):
            return True
        for other in self._live():
            if other is not conn:
                other.held = other.buffered() + other.incoming  # (it read, or was read, since it last received)
        self._held = sum(c.held for c in self._connections)
        if conn not in self._connections:  # it stopped, and _live just forgot it: its frame goes nowhere
            return False
        room = self._buffered if self._protected(conn) else self._share(self._buffered)
        while self._held > room:
            victim = max((c for c in self._live() if c.held and not self._connections[c]), key=lambda c: c.held,
                         default=conn)
            if victim is not conn and self._protected(victim):
                continue  # protected since it connected: spared, and the next is chosen
            self._held -= victim.held
            victim.held = 0
            del self._connections[victim]
            self.connections_closed += 1
            logger.warning("closing the connection of %s: the node's yamux buffers are over their budget of %d bytes, "
                           "and it buffers the most of the strangers' (quirk 44)", victim.peer_id, self._buffered)
            if victim is conn:
                return False
            victim.evict()
        return True

    def _share(self, budget: int) -> int:
        """What strangers may take of `budget`."""
        return budget - int(budget * self._reserve)

    def _protected(self, conn: _Yamux) -> bool:
        """Whether `conn`'s peer is protected, asked anew: a peer may be protected since it connected."""
        protected = self._is_protected(conn.peer_id)
        if conn in self._connections:
            self._connections[conn] = protected
        return protected

    def _live(self) -> list[_Yamux]:
        """The connections still running; forgets those that stopped."""
        for stopped in [c for c in self._connections if c.event_shutting_down.is_set()]:
            self._held -= stopped.held
            self._opened -= stopped.opened
            stopped.held = stopped.opened = 0
            del self._connections[stopped]
        return list(self._connections)


def _warn_hostile(peer: ID, what: str) -> None:
    logger.warning("rejected malformed input from %s: %s", peer, what)


def _reset_by_peer(net_stream: INetStream) -> bool:
    """Whether the peer reset `net_stream` (or its connection broke): a yamux stream's RST came (yamux being the only
    muxer open_host offers)."""
    return net_stream.muxed_stream.reset_received  # type: ignore[attr-defined]


def _closed_here(conn: INetConn) -> bool:
    """Whether this host closed `conn` (_Yamux.closed_here; False for another muxer)."""
    return bool(getattr(conn.muxed_conn, "closed_here", False))


def _fix_muxer_class() -> None:
    """Quirk 35, if py-libp2p still builds a yamux connection by calling the Yamux class it imports."""
    module = libp2p.stream_muxer.muxer_multistream
    if getattr(module, "Yamux", None) is Yamux:
        module.Yamux = _Yamux  # type: ignore[attr-defined,misc]


def _fix_stream_class() -> None:
    """Quirk 65, if yamux still builds its streams by calling the YamuxStream class of its module, whose write(data)
    waits for window credit as _YamuxStream replaces."""
    module = libp2p.stream_muxer.yamux.yamux
    if module.YamuxStream is YamuxStream and list(inspect.signature(YamuxStream.write).parameters) == ["self", "data"]:
        module.YamuxStream = _YamuxStream  # type: ignore[misc]


class _PeerNotifee(INotifee):
    """Turns per-connection notifications into per-peer PeerEvents (quirk 26: a connection's disconnection may be
    notified after the swarm dropped it, even after a new connection to the peer); closes blocked peers' connections."""

    def __init__(self, emit: Callable[[PeerEvent], None], is_blocked: Callable[[ID], bool], close_timeout: float,
                 idle: _IdleInbound | None = None, on_hostile: Callable[[ID, str], None] = _warn_hostile,
                 budget: _NodeBudget | None = None, unresponsive: Counter[str] | None = None) -> None:
        self._emit = emit
        self._budget = budget
        self._unresponsive = unresponsive
        self._on_hostile = on_hostile
        self._is_blocked = is_blocked
        self._close_timeout = close_timeout
        self._idle = idle
        self._connections: dict[ID, list[INetConn]] = {}  # announced peers -> their connections, as notified
        self.announced: dict[str, int] = {}  # announced peers -> the number of the PeerEvent telling of their coming
        self._numbers = itertools.count(1)

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if isinstance(conn.muxed_conn, _Yamux):
            conn.muxed_conn.on_hostile = self._on_hostile  # quirk 35
            if self._unresponsive is not None:
                conn.muxed_conn.unresponsive = self._unresponsive  # quirks 49, 64
            if self._budget is not None:
                self._budget.join(conn.muxed_conn)  # quirk 44
        if self._is_blocked(peer):
            # There is no peer-level gate in py-libp2p 0.8 (its ConnectionGate filters IP addresses only), so an
            # inbound connection from a blocked peer is closed as soon as the handshake names the peer.
            await _close_connection(conn, self._close_timeout)
            return
        known = self._connections.get(peer)
        if known is not None:
            held = network.connections.get(peer, [])
            still = [c for c in known if any(c is h for h in held)]  # the others: their disconnection not notified yet
            if still:
                known[:] = still
            else:
                self._gone(peer, closed_here=all(_closed_here(c) for c in known))
        if peer not in self._connections:
            self._connections[peer] = []
            self.announced[peer.to_base58()] = next(self._numbers)
            self._emit(PeerEvent(peer.to_base58(), connected=True))
        self._connections[peer].append(conn)
        if self._idle is not None and getattr(conn, "direction", None) == Direction.INBOUND:
            self._idle.opened(conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        network.auto_connector.clear_cooldown(peer)  # type: ignore[attr-defined]  # quirk 43
        if self._idle is not None:
            self._idle.gone(conn)
        known = self._connections.get(peer, [])
        if not any(c is conn for c in known):
            return  # a blocked peer's connection, never announced; or one already found gone
        known[:] = [c for c in known if c is not conn]
        if not known:
            self._gone(peer, closed_here=_closed_here(conn))

    def _gone(self, peer: ID, *, closed_here: bool) -> None:
        """The peer's last announced connection closed; `closed_here`: this host closed it (PeerEvent)."""
        del self._connections[peer]
        del self.announced[peer.to_base58()]
        self._emit(PeerEvent(peer.to_base58(), connected=False, closed_here=closed_here))

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, maddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, maddr: multiaddr.Multiaddr) -> None:
        pass


class Host:
    """A running host; get one from open_host(). Its methods may be called from any task of the run."""

    def __init__(self, host: BasicHost, config: HostConfig) -> None:
        self._host = host
        self._config = config
        self._router = _GossipSub(
            protocols=[TProtocol(p) for p in config.gossip_protocols],
            degree=config.mesh_degree,
            degree_low=config.mesh_degree_low,
            degree_high=config.mesh_degree_high,
            heartbeat_interval=config.heartbeat_interval,  # type: ignore[arg-type]  # a float works; int is a stub
            score_params=config.scoring._params(),
            do_px=False,
            adaptive_gossip_enabled=False,  # quirk 3
            spam_protection_enabled=False,  # quirk 1
            eclipse_protection_enabled=False,  # quirk 3: non-spec mesh heuristics
            retained=_RetainedScores(config.scoring.retain_score, config.scoring.retained_peers),
        )
        self._pubsub = _Pubsub(host, self._router, self._validate, self._deliver, self._count_hostile)
        self._my_id = host.get_id()
        self._inboxes: dict[str, trio.MemorySendChannel[Received]] = {}
        self._validators: dict[str, Callable[[str, bytes], Verdict | bool]] = {}
        self._peer_feeds: list[PeerFeed] = []
        self._publish_lock = trio.Lock()
        self._counts: dict[str, int] = dict.fromkeys(
            HostStats.__dataclass_fields__.keys() - {"mesh_prunes", "idle_inbound_closed", "handshakes_aborted",
                                                     "control_dropped", "streams_over_budget",
                                                     "connections_over_budget", "graylisted_rpcs",
                                                     "pending_dropped", "unresponsive_closed"}, 0)
        self._unresponsive: Counter[str] = Counter(dict.fromkeys(UNRESPONSIVE_REASONS, 0))  # (HostStats)
        self._lagging_topics: set[str] = set()
        self._open = True
        self._peer_id = self._my_id.to_base58()
        self._blocked: frozenset[ID] = frozenset()
        self._refused: dict[str, set[str]] = {}  # peer -> stream protocols it refused while connected (quirk 23)
        self._handlers: dict[str, Callable[[Stream], Awaitable[None]]] = {}  # set_stream_handler's
        self._handler_set = {protocol: trio.Event() for protocol in config.served_protocols}  # (early_stream_wait)
        self._streamed: set[ID] = set()  # connected peers that a stream of ours (not pubsub's) was opened with
        self._protected: Callable[[str], bool] = lambda peer_id: False
        self._closes = _Closes()  # _disconnect's closes and streams' resets, cut off as the host stops
        self._idle = _IdleInbound(config.idle_inbound_grace, self._in_use, config.close_timeout)
        self._budget = _NodeBudget(config.inbound_streams_budget, config.buffered_bytes_budget, config.budget_reserve,
                                   lambda peer: self._protected(_peer_str(peer.to_bytes())))
        self._notifee = _PeerNotifee(self._emit_peer_event, self._is_blocked, config.close_timeout, self._idle,
                                     self._count_hostile, self._budget, self._unresponsive)
        host.get_network().register_notifee(self._notifee)
        for protocol in config.served_protocols:
            host.set_stream_handler(TProtocol(protocol), self._serving(protocol))

    @property
    def peer_id(self) -> str:
        """This host's PeerID; it embeds the org's public key (see peer_public_key)."""
        return self._peer_id

    @property
    def listen_addrs(self) -> list[str]:
        """Where this host listens, as bound (a wildcard address stays one), ending in /p2p/<peer id>."""
        return [f"{addr}/p2p/{self.peer_id}" for addr in self._host.get_transport_addrs()]

    def connected_peers(self) -> list[str]:
        return sorted(peer.to_base58() for peer, conns in self._host.get_network().connections.items() if conns)

    def staying_peers(self) -> list[str]:
        """The connected peers that have a connection that is not closing, in `connected_peers`' order. That lists a
        peer until its last connection has closed, which comes after that connection's streams were reset: a stream
        to a peer that hung up fails while the peer is listed still (for thousands of scheduler steps), but its muxer
        says it is shutting down from before the reset (quirk 62)."""
        return sorted(peer.to_base58() for peer, conns in self._host.get_network().connections.items()
                      if any(not conn.muxed_conn.event_shutting_down.is_set() for conn in conns))

    async def connect(self, addr: str) -> str:
        """Dial `addr` unless already connected; returns the peer id. `addr` is a TCP address by IP address or DNS
        name, ending in /p2p/<peer id> (gossip.addrs.parse_peer_addr).

        A name is resolved by the system's resolver (quirk 33: /dns4 its A records, /dns6 AAAA, /dns both) and the
        addresses it gives are dialled in turn until one connects, all within the dial timeout. A failed peer is not
        blocked afterwards (quirk 6): calling connect() again dials again at once, so retry timing is the caller's.
        Raises HostError naming the address and the cause (for a name that does not resolve, the resolver's).
        """
        self._check_open()
        try:
            target = parse_peer_addr(addr)
        except AddrError as error:
            raise HostError(f"dial {addr!r}: {error}") from None
        peer = _parse_peer_id(target.peer_id)
        if peer == self._my_id:
            raise HostError(f"dial {addr}: that is this host's own peer id")
        if self._is_blocked(peer):
            raise HostError(f"dial {addr}: the peer is blocked on this host")
        dialling = _DIALLING.set(True)  # quirk 32
        failures: list[tuple[TcpAddr, Exception]] = []
        resolving = target.transport.is_name
        try:
            with trio.fail_after(self._config.dial_timeout):
                transports = await _resolve(addr, target.transport) if resolving else [target.transport]
                resolving = False
                for transport in transports:
                    try:
                        await self._dial(peer, transport)
                    except Exception as error:
                        failures.append((transport, error))
                    else:
                        return peer.to_base58()
        except trio.TooSlowError:
            waiting = f"no answer from the resolver for {target.transport.host!r}" if resolving else "no connection"
            raise HostError(f"dial {addr}: {waiting} within {self._config.dial_timeout} s") from None
        finally:
            _DIALLING.reset(dialling)
        if not target.transport.is_name:
            raise HostError(f"dial {addr}: {_dial_failure(peer, failures[0][1])}") from failures[0][1]
        raise HostError(f"dial {addr}: " + "; ".join(f"{transport}: {_dial_failure(peer, error)}"
                                                      for transport, error in failures)) from failures[-1][1]

    async def _dial(self, peer: ID, transport: TcpAddr) -> None:
        """One dial of `peer` at an address by IP (quirk 33)."""
        self._host.get_network().unblock_peer(peer)  # quirk 6: a failed address blocks the peer for the next
        self._host.get_peerstore().clear_addrs(peer)  # quirk 16
        await self._host.connect(PeerInfo(peer, [multiaddr.Multiaddr(str(transport))]))

    async def disconnect(self, peer_id: str) -> None:
        """Close every connection to `peer_id` (a no-op if there is none), within close_timeout (quirk 60); a caller
        cancelled meanwhile leaves none of them open."""
        await self._disconnect(_parse_peer_id(peer_id))

    async def _disconnect(self, *peers: ID) -> None:
        """Close the peers' connections all at once, each within close_timeout, a close cut off finished (quirk 60),
        shielded: a caller cancelled meanwhile (a block list changed by an API request that timed out, say) left the
        connections it had not reached open, and the one it was closing half closed and listed. Not once the host
        stops (`_cut_closes_when_stopping`): its exit closes them all."""
        connections = self._host.get_network().connections
        with self._closes.shielded():
            async with trio.open_nursery() as nursery:
                for conn in [conn for peer in peers for conn in connections.get(peer, [])]:
                    nursery.start_soon(_close_connection, conn, self._config.close_timeout)

    async def _cut_closes_when_stopping(self) -> None:
        """A task of the host's own, cancelled as the host stops (the nursery the host runs in cancelled, a node's
        shutdown): the closes of `_disconnect` and the streams' resets under way are cut off then, and any later one
        is not shielded, as the host's exit closes every connection within close_timeout; shielded, a peer's close
        that did not end, or a reset's write to a peer reading nothing, held the node's shutdown for close_timeout
        first (5 s; the node's, 0.5 s of its 2 s), each reset left by the stop in turn."""
        try:
            await trio.sleep_forever()
        finally:
            self._closes.stop()

    @property
    def blocked(self) -> list[str]:
        """The peers this host refuses to talk to (see set_blocked), sorted."""
        return sorted(peer.to_base58() for peer in self._blocked)

    async def set_blocked(self, peer_ids: Iterable[str]) -> None:
        """Refuse these peers from now on, and only these: disconnect them, never dial them, close their inbound
        connections at once, drop gossip they relay and reset streams they open. Raises InvalidPeerId (before
        changing anything) for a string that is not a PeerID. Their connections are closed all at once, within
        close_timeout (quirk 60), and a caller cancelled meanwhile still leaves none of them connected.
        """
        blocked = frozenset(_parse_peer_id(p) for p in peer_ids)
        self._blocked = blocked
        await self._disconnect(*blocked)

    def set_protected(self, is_protected: Callable[[str], bool]) -> None:
        """Never close an inbound connection of a peer for which `is_protected(peer_id)` holds as idle (quirk 34)
        (the node's bootstrap peers and the orgs in its horizon), and let it take the share of the node's budget that
        strangers may not (quirk 44); it is asked as a connection's grace ends, and as the budget runs short."""
        self._protected = is_protected

    def peer_events(self) -> PeerFeed:
        """A new feed of PeerEvents from now on (each caller gets every event), starting from the peers whose coming the
        host has told of and not yet their leaving (those `connected_peers` lists, but for one whose event is under
        way). Ends when the host closes.

        A subscriber receive_buffer events behind is told, when it reads again, who came and who left meanwhile in
        place of the events it missed (gossip.peer_feed); those are counted as dropped.
        """
        self._check_open()
        feed = PeerFeed(self._config.receive_buffer, self._notifee.announced)
        self._peer_feeds.append(feed)
        return feed

    async def subscribe(
        self, topic: str, validator: Callable[[str, bytes], Verdict | bool]
    ) -> trio.MemoryReceiveChannel[Received]:
        """Join `topic`; returns the channel of messages that passed `validator`. It ends when the host closes.

        `validator(forwarder_peer_id, data)` runs synchronously for every message before it is delivered or
        relayed: Verdict.ACCEPT (or True) accepts; Verdict.IGNORE drops the message unrelayed without penalising
        the forwarder, and the same message from another peer is judged again (quirk 28); anything else rejects
        (and lowers the forwarder's score). It must be quick. If it raises, the message is rejected and the error
        logged; it never reaches py-libp2p (quirk 4). Messages larger than max_message_size are rejected before
        it is called.
        """
        self._check_open()
        _check_topic(topic)
        if topic in self._inboxes:
            raise HostError(f"already subscribed to topic {topic!r}")
        send, receive = trio.open_memory_channel[Received](self._config.receive_buffer)
        self._inboxes[topic] = send
        self._validators[topic] = validator
        await self._pubsub.subscribe(topic)
        return receive

    async def publish(self, topic: str, data: bytes) -> None:
        """Sign and gossip `data` on `topic`; returns once it is queued for every peer (quirk 8).

        Raises HostError if `data` exceeds max_message_size or this host's own validator for `topic`
        rejects it; a message that returns normally is never dropped by this host.
        """
        self._check_open()
        _check_topic(topic)
        if len(data) > self._config.max_message_size:
            raise HostError(f"publish to {topic!r}: {len(data)} bytes exceeds max_message_size "
                            f"{self._config.max_message_size}")
        validator = self._validators.get(topic)
        if validator is not None and (verdict := self._call_validator(topic, validator, self.peer_id, data)
                                      ) is not Verdict.ACCEPT:
            said = "ignored" if verdict is Verdict.IGNORE else "rejected"
            raise HostError(f"publish to {topic!r}: this host's own validator {said} the message")
        async with self._publish_lock:
            await self._wait_for_queue_space()
            await self._pubsub.publish(topic, data)

    async def wait_for_mesh(self, topic: str, peer_id: str) -> None:
        """Returns once `peer_id` is in this host's mesh for `topic`, so a publish reaches it directly."""
        await self._router.wait_for_mesh(_parse_peer_id(peer_id), topic, timeout=math.inf)

    def mesh_peers(self, topic: str) -> list[str]:
        """The peers in this host's mesh for `topic` (those its messages go to directly), sorted."""
        return sorted(peer.to_base58() for peer in self._router.mesh.get(topic, ()))

    def set_stream_handler(self, protocol: str, handler: Callable[[Stream], Awaitable[None]]) -> None:
        """Serve `protocol`: `handler` runs in its own task for each inbound stream, which is closed when it
        returns and reset if it raises (the error is logged; it never reaches py-libp2p, quirk 12). For a protocol
        in HostConfig.served_protocols, the streams that came before it waited for it, and it serves them too (those
        whose connection is still open, whose peer is not blocked and did not reset them).
        """
        served = self._host.get_mux().handlers
        if not protocol.startswith("/") or protocol in self._handlers or (
                protocol in served and protocol not in self._handler_set):
            raise HostError(f"protocol {protocol!r}: must start with '/' and not be served already")
        self._handlers[protocol] = handler
        if protocol in self._handler_set:
            self._handler_set[protocol].set()
        else:
            self._host.set_stream_handler(TProtocol(protocol), self._serving(protocol))

    def _serving(self, protocol: str) -> Callable[[INetStream], Awaitable[None]]:
        """py-libp2p's handler of `protocol`'s inbound streams: each given to set_stream_handler's handler, once
        there is one (HostConfig.early_stream_wait)."""

        async def serve(net_stream: INetStream) -> None:
            if self._unserved(net_stream.muxed_conn):
                await net_stream.reset()
                return
            self._streamed.add(net_stream.muxed_conn.peer_id)
            peer = net_stream.muxed_conn.peer_id.to_base58()
            stream = Stream(net_stream, peer, protocol, closes=self._closes, reset_timeout=self._config.close_timeout)
            if protocol not in self._handlers:  # a served protocol whose service is not running yet
                await self._wait_for_handler(protocol, net_stream.muxed_conn)
                if self._unserved(net_stream.muxed_conn) or _reset_by_peer(net_stream):
                    logger.debug("%s stream from %s: reset, its peer reset it, left or was blocked as it waited for "
                                 "its handler", protocol, peer)
                    await stream.reset()
                    return
            if (handler := self._handlers.get(protocol)) is None:
                logger.debug("%s stream from %s: reset, nothing served it within %g s", protocol, peer,
                             self._config.early_stream_wait)
                await stream.reset()
                return
            try:
                await handler(stream)
            except Exception:
                logger.exception("%s handler failed on a stream from %s", protocol, peer)
                await stream.reset()
            else:
                await stream.close()

        return serve

    def _unserved(self, conn: IMuxedConn) -> bool:
        """Whether a stream the peer opened on `conn` goes to no handler: the peer is blocked, or the connection shut
        down (the peer left, or this host closed it; yamux being the only muxer open_host offers)."""
        return self._is_blocked(conn.peer_id) or conn.event_shutting_down.is_set()  # type: ignore[attr-defined]

    async def _wait_for_handler(self, protocol: str, conn: IMuxedConn) -> None:
        """Return once `protocol` has a handler, `conn` shuts down (its peer left or was blocked: no one is left to
        serve, and the stream's task ends at once) or early_stream_wait passes, whichever comes first."""
        with trio.move_on_after(self._config.early_stream_wait):
            async with trio.open_nursery() as waits:

                async def until(event: trio.Event) -> None:
                    await event.wait()
                    waits.cancel_scope.cancel()

                waits.start_soon(until, self._handler_set[protocol])
                waits.start_soon(until, conn.event_shutting_down)  # type: ignore[attr-defined]  # (yamux only)

    async def open_stream(self, peer_id: str, protocol: str) -> Stream:
        """A new stream to a connected peer; HostError if not connected or no stream opens, ProtocolNotSupported
        if the peer does not serve `protocol` (asked again while it stays connected, at once: quirk 23)."""
        self._check_open()
        peer = _parse_peer_id(peer_id)
        if self._is_blocked(peer):
            raise HostError(f"open {protocol} stream to {peer_id}: the peer is blocked on this host")
        if not self._host.get_network().connections.get(peer):
            raise HostError(f"open {protocol} stream to {peer_id}: not connected (connect() first)")
        if self.refused(peer_id, protocol):
            raise ProtocolNotSupported(f"open {protocol} stream to {peer_id}: the peer does not serve it "
                                       "(it said so earlier on this connection)")
        try:
            with trio.fail_after(self._config.stream_open_timeout):
                net_stream = await self._host.new_stream(peer, [TProtocol(protocol)])
        except trio.TooSlowError:
            raise HostError(f"open {protocol} stream to {peer_id}: no answer within "
                            f"{self._config.stream_open_timeout} s") from None
        except Exception as error:
            if _said_not_supported(error):
                if self._host.get_network().connections.get(peer):
                    self._refused.setdefault(peer_id, set()).add(protocol)
                raise ProtocolNotSupported(f"open {protocol} stream to {peer_id}: the peer does not serve it"
                                           ) from error
            raise HostError(f"open {protocol} stream to {peer_id}: {_reason(error)}") from error
        self._streamed.add(peer)
        return Stream(net_stream, peer_id, protocol, closes=self._closes, reset_timeout=self._config.close_timeout)

    def refused(self, peer_id: str, protocol: str) -> bool:
        """Whether the peer refused a `protocol` stream since it last connected (so asking again is pointless)."""
        return protocol in self._refused.get(peer_id, ())

    def stats(self) -> HostStats:
        return HostStats(**self._counts, mesh_prunes=self._router.mesh_prunes, idle_inbound_closed=self._idle.closed,
                         handshakes_aborted=self._idle.handshakes_aborted, control_dropped=self._router.control_dropped,
                         graylisted_rpcs=self._pubsub.graylisted_rpcs, streams_over_budget=self._budget.streams_refused,
                         connections_over_budget=self._budget.connections_closed,
                         pending_dropped=self._router.pending_dropped, unresponsive_closed=dict(self._unresponsive))

    def peer_score(self, peer_id: str) -> float:
        """This host's GossipSub score for a peer over the topics it subscribes to (0 for a newcomer)."""
        return self._router.scorer.score(_parse_peer_id(peer_id), list(self._inboxes))

    def _is_blocked(self, peer: ID) -> bool:
        return peer in self._blocked

    def _in_use(self, peer: ID) -> bool:
        """Whether a peer's connection is in use (quirk 34): it subscribes to a gossip topic, a stream of ours was
        opened with it, or it is protected."""
        return (peer in self._streamed or any(peer in peers for peers in self._pubsub.peer_topics.values())
                or self._protected(peer.to_base58()))

    def _check_open(self) -> None:
        if not self._open:
            raise HostError("the host is closed")

    def _validate(self, forwarder: ID, msg: rpc_pb2.Message) -> Verdict:
        """The verdict on a message: its topics' validators in turn, the first that does not accept deciding."""
        if forwarder == self._my_id:
            return Verdict.ACCEPT  # publish() validated it before handing it over
        if self._is_blocked(forwarder):
            return Verdict.REJECT  # relayed in the moment before its connection closed
        if len(msg.data) > self._config.max_message_size:
            self._counts["oversized"] += 1
            return Verdict.REJECT
        for topic in msg.topicIDs:
            validator = self._validators.get(topic)
            if validator is None:
                continue
            verdict = self._call_validator(topic, validator, forwarder.to_base58(), msg.data)
            if verdict is Verdict.IGNORE:
                self._counts["ignored"] += 1
                return verdict
            if verdict is not Verdict.ACCEPT:
                self._counts["rejected"] += 1
                return verdict
        return Verdict.ACCEPT

    def _call_validator(self, topic: str, validator: Callable[[str, bytes], Verdict | bool], peer: str,
                        data: bytes) -> Verdict:
        try:
            verdict = validator(peer, data)
        except Exception:
            self._counts["validator_errors"] += 1
            logger.exception("validator for topic %r raised on a message from %s; rejecting it", topic, peer)
            return Verdict.REJECT
        if verdict is True or verdict is Verdict.ACCEPT:
            return Verdict.ACCEPT
        return Verdict.IGNORE if verdict is Verdict.IGNORE else Verdict.REJECT

    def _deliver(self, msg: rpc_pb2.Message) -> None:
        for topic in msg.topicIDs:
            inbox = self._inboxes.get(topic)
            if inbox is None:
                continue
            try:
                inbox.send_nowait(Received(_peer_str(msg.from_id), msg.data))
                self._counts["delivered"] += 1
                self._lagging_topics.discard(topic)
            except trio.WouldBlock:
                self._counts["dropped_slow_subscriber"] += 1
                if topic not in self._lagging_topics:  # once per episode, not once per message
                    self._lagging_topics.add(topic)
                    logger.warning("subscriber of topic %r is %d messages behind; dropping until it catches up",
                                   topic, self._config.receive_buffer)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the subscriber closed its channel: it no longer wants this topic

    def _emit_peer_event(self, event: PeerEvent) -> None:
        if not event.connected:
            self._refused.pop(event.peer_id, None)  # it may serve more when it comes back
            self._streamed.discard(ID.from_base58(event.peer_id))  # its next connection earns its keep anew
        for feed in self._peer_feeds:
            self._counts["peer_events_dropped"] += feed.put(event)

    def _count_hostile(self, peer: ID, what: str) -> None:
        self._counts["hostile_input"] += 1
        _warn_hostile(peer, what)

    async def _wait_for_queue_space(self) -> None:
        limit = OutBoundQueueSize // 2  # room for this message, its IDONTWANT, relays and heartbeat control
        with trio.move_on_after(self._config.publish_stall_timeout):
            while self._pubsub.peers_with_full_queues(limit):
                await self._pubsub.queue_drained()
            return
        stalled = self._pubsub.peers_with_full_queues(limit)
        for peer in stalled:
            self._counts["stalled_peers_disconnected"] += 1
            logger.warning("send queue to peer %s stayed over half full for %s s; disconnecting it",
                           peer, self._config.publish_stall_timeout)
        await self._disconnect(*stalled)  # (all at once: a publish waits close_timeout at most, not one a peer)

    def _close_channels(self) -> None:
        self._open = False
        for channel in self._inboxes.values():
            channel.close()
        for feed in self._peer_feeds:
            feed.close()


@asynccontextmanager
async def open_host(seed: bytes, listen: list[str], *, config: HostConfig = HostConfig()) -> AsyncIterator[Host]:
    """Run a host keyed by the org's 32-byte Ed25519 seed, listening on TCP multiaddrs (port 0 picks one).

    On exit every connection and listener is closed and every task started for it has finished. An
    exception from the body, or a lone failure inside py-libp2p, comes out as itself rather than wrapped
    in the exception groups of the nurseries in between.
    """
    if len(seed) != 32:
        raise ValueError(f"seed must be the 32-byte Ed25519 private seed, got {len(seed)} bytes")
    if not listen:
        raise ValueError("open_host needs at least one listen address")
    addrs = [_parse_listen_addr(a) for a in listen]
    for addr, maddr in zip(listen, addrs):
        _check_port_free(addr, maddr)
    _route_libp2p_logging(config.libp2p_log_level)
    _fix_read_exactly()
    _fix_window_updates()
    _fix_sender_records()
    _fix_graylisting()  # (after quirk 24's fix, which replaces the same function only if it is still the library's)
    _fix_own_signature_check()
    _fix_muxer_class()
    _fix_stream_class()
    _fix_header_reads()
    _fix_negotiation()
    key_pair = create_new_key_pair(seed)
    lp_host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        transports=[TCP()],
        connection_config=_connection_config(config),
        disable_identify_address_discovery=True,  # advertise what we listen on, not what peers claim to see
    )
    lp_host.get_network().retry_config = RetryConfig(max_retries=0)  # quirk 6: the caller owns retries
    _dial_only_in_connect(lp_host.get_network())
    host = Host(lp_host, config)
    _free_inbound_slots_on_close(lp_host.get_network(), host._idle.handshaking)
    _evict_idle_when_full(lp_host.get_network(), host._idle.evict_one)
    try:
        async with _running(lp_host, addrs, host, config):
            yield host
    except BaseExceptionGroup as group:
        if (sole := _sole_exception(group)) is None:
            raise
        raise sole from sole.__cause__


@asynccontextmanager
async def _running(lp_host: BasicHost, addrs: list[multiaddr.Multiaddr], host: Host, config: HostConfig
                   ) -> AsyncIterator[None]:
    network = lp_host.get_network()
    async with lp_host.run(addrs):
        try:
            if failed := [str(m) for m in addrs if str(m) not in network.listeners]:
                raise HostError(f"could not listen on {failed}")
            await network.auto_connector.stop()  # quirk 6: peers are the node's choice
            async with background_trio_service(host._pubsub), background_trio_service(host._router), \
                    trio.open_nursery() as nursery:
                await host._pubsub.wait_until_ready()
                nursery.start_soon(host._idle.run)
                nursery.start_soon(host._cut_closes_when_stopping)
                try:
                    yield
                finally:
                    nursery.cancel_scope.cancel()
                    host._close_channels()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(config.close_timeout):
                await _close_listeners(network)  # quirk 5, first: a peer's close cannot hold them open, cut off
                await _close_connections(network, config.close_timeout)  # quirk 25
                await lp_host.close()  # quirk 5: run() alone leaves the listener open


async def _close_listeners(network: INetwork) -> None:
    """Stop listening (the swarm's close does too, after every connection's: one that did not end within close_timeout
    left the host's ports accepting after it stopped)."""
    async with trio.open_nursery() as nursery:
        for listener in list(network.listeners.values()):
            nursery.start_soon(listener.close)


async def _close_connections(network: INetwork, timeout: float) -> None:
    """Close every connection's muxer, and with it its socket, all at once (each takes 0.1 s: Yamux.close sleeps); a
    close cut off (a peer reading nothing holds its GO_AWAY's write) closes its socket all the same."""
    async with trio.open_nursery() as nursery:
        for connections in list(network.connections.values()):
            for connection in connections:
                if not connection.muxed_conn.is_closed:
                    nursery.start_soon(_close_muxer, connection, timeout)


async def _close_muxer(conn: INetConn, timeout: float) -> None:
    async with _socket_closed_if_cancelled(conn, timeout):
        await conn.muxed_conn.close()


def _sole_exception(group: BaseExceptionGroup) -> BaseException | None:
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending and len(leaves) < 2:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 and not pending else None


def _check_port_free(addr: str, maddr: multiaddr.Multiaddr) -> None:
    """Quirk 15: py-libp2p listens with SO_REUSEPORT, so a port already in use would be shared, not refused."""
    ip = maddr.value_for_protocol(maddr.protocols()[0].name)
    port = int(maddr.value_for_protocol("tcp"))
    if port != 0 and (error := bind_error(ip, port)) is not None:
        raise ListenError(f"cannot listen on {addr}: {error.strerror}")


async def _read_until_complete(reader: Reader, n: int, retry_count: int = 0) -> bytes:
    """read_exactly() without the retry limit (quirk 17); `retry_count` keeps the replaced signature."""
    buffer = bytearray()
    while len(buffer) < n:
        chunk = await reader.read(n - len(buffer))
        if not chunk:
            raise IncompleteReadError(
                f"Connection closed during read operation: expected {n} bytes but received {len(buffer)} bytes",
                expected_bytes=n,
                received_bytes=len(buffer),
            )
        buffer += chunk
    return bytes(buffer)


def _fix_read_exactly() -> None:
    if "retry_count" in inspect.signature(libp2p.io.msgio.read_exactly).parameters and (
        libp2p.io.msgio.read_exactly is libp2p.io.utils.read_exactly
    ):
        libp2p.io.msgio.read_exactly = _read_until_complete


# Quirk 63: the _Yamux whose task reads its peer's frames (handle_incoming), in that task; the length of a header.
_FRAMES_READ_BY: contextvars.ContextVar[_Yamux | None] = contextvars.ContextVar("frames_read_by", default=None)
_HEADER_SIZE = struct.calcsize(YAMUX_HEADER_FORMAT)


async def _read_frame_part(reader: Reader, n: int, retry_count: int = libp2p.io.utils.DEFAULT_RETRY_READ_COUNT
                           ) -> bytes:
    """read_exactly(), with which yamux reads each frame's header and body; a header that a _Yamux's reading task
    read, or failed to, is told to that connection (quirk 63), which may give py-libp2p another to read (quirk 64),
    once the connection's frame budget holds it (quirk 68)."""
    muxer = _FRAMES_READ_BY.get()
    if muxer is None or muxer.incoming or n != _HEADER_SIZE:  # another task's read, or a DATA frame's body
        return await libp2p.io.utils.read_exactly(reader, n, retry_count)
    try:
        header = await libp2p.io.utils.read_exactly(reader, n, retry_count)
    except Exception:
        muxer.ended_there()
        raise
    fields = struct.unpack(YAMUX_HEADER_FORMAT, header)  # (once: the hot path of every frame read; the clock too)
    now = await muxer.within_frame_budget(fields, trio.current_time())
    header = muxer.header_read(header, fields, now)
    await muxer.reset_refused()
    return header


def _fix_header_reads() -> None:
    """Quirk 63, if yamux still reads frames with read_exactly(reader, n, retry_count) by that name."""
    module = libp2p.stream_muxer.yamux.yamux
    if module.read_exactly is libp2p.io.utils.read_exactly and list(
            inspect.signature(module.read_exactly).parameters) == ["reader", "n", "retry_count"]:
        module.read_exactly = _read_frame_part  # type: ignore[attr-defined]


async def _credit_in_halves(stream: YamuxStream, *, bytes_read: int = 0) -> None:
    """Receive-window credit as go-yamux gives it (quirk 21): one WINDOW_UPDATE once the bytes consumed and not
    yet credited reach half the window. `bytes_read` keeps the replaced signature; the window tells it all."""
    async with stream.window_lock:
        buffered = len(stream.conn.stream_buffers.get(stream.stream_id, b""))
        owed = stream.target_recv_window - (stream.recv_window + buffered)
        if owed < stream.target_recv_window // 2:  # (the window is never below 256 KiB)
            return
        stream.recv_window += owed
        owed += stream._apply_autotune_epoch(buffered)  # grows the window while the sender keeps it full
    await stream.send_window_update(owed, skip_lock=True)


def _fix_window_updates() -> None:
    replaced = YamuxStream._auto_tune_and_send_window_update
    if "bytes_read" in inspect.signature(replaced).parameters and hasattr(YamuxStream, "_apply_autotune_epoch"):
        YamuxStream._auto_tune_and_send_window_update = _credit_in_halves  # type: ignore[method-assign]


class _SenderRecords:
    """Quirk 24: the signed peer record each pubsub RPC carries, made again only when the host's record changed
    or SENDER_RECORD_TTL_S passed, and a received one checked once per peer and SENDER_RECORD_TTL_S while it stays
    byte-identical."""

    def __init__(self, make: Callable[[BasicHost], tuple[bytes, bool]],
                 consume: Callable[[rpc_pb2.RPC, BasicHost, ID], bool],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._make, self._consume, self._clock = make, consume, clock
        # host -> (made at, the peerstore's local record it was made from, the envelope bytes)
        self._ours: weakref.WeakKeyDictionary[BasicHost, tuple[float, object, bytes]] = weakref.WeakKeyDictionary()
        # host -> peer -> (checked at, the record's bytes), least recently accepted first
        self._accepted: weakref.WeakKeyDictionary[BasicHost, dict[ID, tuple[float, bytes]]] = (
            weakref.WeakKeyDictionary())

    def to_send(self, host: BasicHost) -> tuple[bytes, bool]:
        """env_to_send_in_RPC(host): (envelope, whether it was made just now)."""
        now, local = self._clock(), host.get_peerstore().get_local_record()
        made = self._ours.get(host)
        if made is not None and made[1] is local and now - made[0] <= SENDER_RECORD_TTL_S:
            return made[2], False
        envelope, fresh = self._make(host)
        self._ours[host] = (now, host.get_peerstore().get_local_record(), envelope)
        return envelope, fresh

    def consume(self, rpc: rpc_pb2.RPC, host: BasicHost, peer: ID) -> bool:
        """maybe_consume_signed_record(rpc, host, peer), skipped for the bytes last accepted from this peer."""
        if not rpc.HasField("senderRecord"):
            return True
        now, record = self._clock(), rpc.senderRecord
        accepted = self._accepted.get(host)
        if accepted is None:
            accepted = self._accepted[host] = {}
        last = accepted.get(peer)
        if last is not None and last[1] == record and now - last[0] <= SENDER_RECORD_TTL_S:
            return True
        if not self._consume(rpc, host, peer):
            return False
        accepted.pop(peer, None)
        accepted[peer] = (now, record)
        if len(accepted) > MAX_REMEMBERED_RECORDS:  # peers come and go: forget the one accepted longest ago
            del accepted[next(iter(accepted))]
        return True


# Quirk 45: the _Pubsub whose task reads a peer's RPCs (continuously_read_stream), in that task.
_READING: contextvars.ContextVar[_Pubsub | None] = contextvars.ContextVar("reading", default=None)


class _IgnoreGraylisted:
    """Quirk 45: pubsub's per-RPC check of the sender's signed peer record, `consume`, after the reading _Pubsub
    emptied the RPC of a graylisted peer (then nothing is checked: there is nothing left), and netted its
    subscriptions (quirk 51)."""

    def __init__(self, consume: Callable[[rpc_pb2.RPC, BasicHost, ID], bool]) -> None:
        self._consume = consume

    def __call__(self, rpc: rpc_pb2.RPC, host: BasicHost, peer: ID) -> bool:
        pubsub = _READING.get()
        if pubsub is not None:
            if pubsub.ignore_if_graylisted(rpc, peer):
                return True
            pubsub.net_subscriptions(rpc)
        return self._consume(rpc, host, peer)


def _fix_graylisting() -> None:
    """Quirk 45, if pubsub still checks each RPC it reads with maybe_consume_signed_record(msg, host, peer_id) first,
    by that name (quirk 24's replacement, if made, is kept inside)."""
    module = libp2p.pubsub.pubsub
    consume = module.maybe_consume_signed_record
    if not isinstance(consume, _IgnoreGraylisted) and len(inspect.signature(consume).parameters) == 3:
        module.maybe_consume_signed_record = _IgnoreGraylisted(consume)  # type: ignore[attr-defined]


def _fix_sender_records() -> None:
    """Quirk 24, if py-libp2p still calls the two functions by these names with these parameters."""
    modules = (libp2p.pubsub.pubsub, libp2p.pubsub.gossipsub)
    if all(m.env_to_send_in_RPC is env_to_send_in_RPC and m.maybe_consume_signed_record is maybe_consume_signed_record
           for m in modules) and (
        list(inspect.signature(env_to_send_in_RPC).parameters) == ["host"]
        and list(inspect.signature(maybe_consume_signed_record).parameters) == ["msg", "host", "peer_id"]
    ):
        records = _SenderRecords(env_to_send_in_RPC, maybe_consume_signed_record)
        for module in modules:
            module.env_to_send_in_RPC = records.to_send  # type: ignore[attr-defined]
            module.maybe_consume_signed_record = records.consume  # type: ignore[attr-defined]


# Quirk 29: the message the current task's own publish() signed and is pushing, if any.
_SIGNED_HERE: contextvars.ContextVar[rpc_pb2.Message | None] = contextvars.ContextVar("signed_here", default=None)


def _fix_own_signature_check() -> None:
    """Quirk 29, if pubsub still calls signature_validator(msg) by that name."""
    module = libp2p.pubsub.pubsub
    if module.signature_validator is signature_validator and list(
            inspect.signature(signature_validator).parameters) == ["msg"]:
        module.signature_validator = _verify_unless_signed_here  # type: ignore[attr-defined]


def _verify_unless_signed_here(msg: rpc_pb2.Message) -> bool:
    """StrictSign's check (GossipSub v1.1 message signing), skipped for the message object this task signed."""
    return msg is _SIGNED_HERE.get() or signature_validator(msg)


def _free_inbound_slots_on_close(network: INetwork,
                                 handshaking: Callable[[IRawConnection], contextlib.AbstractContextManager[None]]
                                 ) -> None:
    """Quirks 31 and 38, if the swarm still upgrades inbound connections through this method, with these parameters."""
    upgrade = getattr(network, "upgrade_inbound_raw_conn", None)
    if upgrade is None or list(inspect.signature(upgrade).parameters) != ["raw_conn", "maddr"]:
        return

    async def upgrade_until_closed(raw_conn: IRawConnection, maddr: multiaddr.Multiaddr) -> IMuxedConn:
        with handshaking(raw_conn):
            muxed = await upgrade(raw_conn, maddr)
        await muxed.event_shutting_down.wait()  # (yamux, the only muxer offered)
        raise SwarmException(f"inbound connection from {muxed.peer_id} closed")  # ends the task: its slot is freed

    network.upgrade_inbound_raw_conn = upgrade_until_closed  # type: ignore[attr-defined]


def _evict_idle_when_full(network: INetwork, evict_one: Callable[[], bool]) -> None:
    """Quirk 34, if the swarm still admits inbound connections through a trio.CapacityLimiter at _inbound_limiter."""
    limiter = getattr(network, "_inbound_limiter", None)
    if isinstance(limiter, trio.CapacityLimiter):
        network._inbound_limiter = _InboundSlots(int(limiter.total_tokens), evict_one)  # type: ignore[attr-defined]


# Quirk 32: whether the current task is in Host.connect, the one place the swarm may dial.
_DIALLING: contextvars.ContextVar[bool] = contextvars.ContextVar("dialling", default=False)


def _dial_only_in_connect(network: INetwork) -> None:
    """Quirk 32, if py-libp2p still reaches a peer through the swarm's dial_peer(peer_id)."""
    dial_peer = getattr(network, "dial_peer", None)
    if dial_peer is None or list(inspect.signature(dial_peer).parameters) != ["peer_id"]:
        return

    async def dial_connected_only(peer_id: ID) -> list[INetConn]:
        if not _DIALLING.get() and not network.get_connections(peer_id):
            raise SwarmException(f"{peer_id} is not connected (only Host.connect dials)")
        return await dial_peer(peer_id)

    network.dial_peer = dial_connected_only  # type: ignore[method-assign]


class _ProposalLimit(IMultiselectCommunicator):
    """Quirk 40: a multistream-select communicator that refuses to read past the handshake and MAX_PROTOCOL_PROPOSALS
    proposals."""

    def __init__(self, communicator: IMultiselectCommunicator) -> None:
        self._communicator = communicator
        self._reads = 0

    async def write(self, msg_str: str) -> None:
        await self._communicator.write(msg_str)

    async def read(self) -> str:
        self._reads += 1
        if self._reads > 1 + MAX_PROTOCOL_PROPOSALS:  # the handshake's line, then the proposals
            raise MultiselectCommunicatorError(f"more than {MAX_PROTOCOL_PROPOSALS} protocols proposed")
        return await self._communicator.read()


_NEGOTIATE = Multiselect.negotiate


async def _negotiate_few(self: Multiselect, communicator: IMultiselectCommunicator,
                         negotiate_timeout: int = DEFAULT_NEGOTIATE_TIMEOUT) -> tuple[TProtocol | None, object]:
    """Multiselect.negotiate, with MAX_PROTOCOL_PROPOSALS proposals at most (quirk 40)."""
    return await _NEGOTIATE(self, _ProposalLimit(communicator), negotiate_timeout)


def _fix_negotiation() -> None:
    """Quirk 40, if multistream-select still negotiates through Multiselect.negotiate with these parameters."""
    if Multiselect.negotiate is _NEGOTIATE and list(inspect.signature(_NEGOTIATE).parameters) == [
            "self", "communicator", "negotiate_timeout"]:
        Multiselect.negotiate = _negotiate_few  # type: ignore[method-assign,assignment]


def _route_libp2p_logging(level: int) -> None:
    if os.environ.get("LIBP2P_DEBUG"):
        return  # whoever set it asked for py-libp2p's own log setup
    libp2p_logger = logging.getLogger("libp2p")
    libp2p_logger.propagate = True  # quirk 7
    libp2p_logger.setLevel(level)
    _filter_new_libp2p_loggers()
    for name in _ROUTINE_FAILURE_LOGGERS:  # quirk 23's loggers, made now if their modules have not yet
        logging.getLogger(name)
    for name, child in list(logging.root.manager.loggerDict.items()):
        if not (name.startswith("libp2p.") and isinstance(child, logging.Logger)):
            continue
        # a few modules pin their own level (the auto-connector logs INFO on every start)
        if 0 < child.level < level:
            child.setLevel(logging.NOTSET)
        _filter_libp2p_logger(child)


def _filter_libp2p_logger(logger: logging.Logger) -> None:
    """Quirk 23's filter on a logger of routine failures, then quirk 59's (so a demoted record spends nothing)."""
    if logger.name in _ROUTINE_FAILURE_LOGGERS and not any(
            isinstance(f, _RoutineFailuresAsDebug) for f in logger.filters):
        logger.addFilter(_RoutineFailuresAsDebug())
    if LIBP2P_LOG_LIMIT not in logger.filters:
        logger.addFilter(LIBP2P_LOG_LIMIT)


def _filter_new_libp2p_loggers() -> None:
    """Quirk 59: the loggers made from now on are _Libp2pFiltered, subclassing the class they were made of (so an
    application's own logger class still applies), set where it was set (logging.setLoggerClass or the manager's)."""
    manager = logging.root.manager
    made = manager.loggerClass or logging.getLoggerClass()
    if issubclass(made, _Libp2pFiltered):
        return
    filtered = type("Libp2pFiltered", (_Libp2pFiltered, made), {})
    if manager.loggerClass is not None:
        manager.setLoggerClass(filtered)
    else:
        logging.setLoggerClass(filtered)


class _Libp2pFiltered(logging.Logger):
    """Quirk 59: a logger named under `libp2p.` gets py-libp2p's filters as it is made. A filter on the `libp2p`
    logger would not see its children's records; one on a handler of its own, `libp2p` no longer propagating, would
    see them after any other handler put on `libp2p` (pytest puts its own on each logger not propagating)."""

    def __init__(self, name: str, level: int = logging.NOTSET) -> None:
        super().__init__(name, level)
        if name.startswith("libp2p."):
            _filter_libp2p_logger(self)


class _WarningsOncePerWindow(RateLimit):
    """Quirk 59: vouching.log_limit's per-call-site limit for py-libp2p's records of WARNING or worse; the rest pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING or super().filter(record)


LIBP2P_LOG_WINDOW_S = 60.0  # a py-libp2p call site writes one WARNING or worse in this many seconds (quirk 59)
LIBP2P_LOG_LIMIT = _WarningsOncePerWindow(burst=1, window=LIBP2P_LOG_WINDOW_S)


# Where py-libp2p logs routine failures at ERROR before raising them to the caller (quirk 23), and how they start
# (yamux's: a connection's reading task ended by its close, which the caller is told of as a disconnect).
_ROUTINE_FAILURE_LOGGERS = ("libp2p.host.basic_host", "libp2p.transport.tcp.tcp", "libp2p.network.swarm",
                            "libp2p.protocol_muxer.multiselect_client", "libp2p.stream_muxer.yamux.yamux")
_ROUTINE_FAILURES = ("Failed to open stream to peer", "Failed to open TCP stream",
                     "failed to upgrade security for peer", "MultiselectClient handshake:")
_ADD_CONN_FAILED = "[ADDCONN_FAIL]"  # routine when the exception (the record's second argument) is LifecycleError
# Yamux.handle_incoming's record of the error that ended it ("... for peer X: ClosedResourceError: ..."), routine for a
# ClosedResourceError (a stream the peer opened, handed on after this host's close of the connection began) and a
# ConnectionClosedError (the peer reset the connection as this host wrote or read a frame).
_HANDLE_INCOMING_FAILED = "Error in handle_incoming for peer "
_HANDLE_INCOMING_ROUTINE = ("ClosedResourceError", "ConnectionClosedError")


class _RoutineFailuresAsDebug(logging.Filter):
    """Quirk 23: py-libp2p's records of routine failures, which it also raises, become DEBUG records (dropped
    unless the logger is enabled for DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not _routine_failure(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _routine_failure(record: logging.LogRecord) -> bool:
    message = str(record.msg)
    if message.startswith(_ROUTINE_FAILURES):
        return True
    if message.startswith(_HANDLE_INCOMING_FAILED):
        error = message.split(": ", 2)[1:2]  # (a peer id holds no ": ")
        return bool(error) and error[0] in _HANDLE_INCOMING_ROUTINE
    args = record.args if isinstance(record.args, tuple) else ()
    return message.startswith(_ADD_CONN_FAILED) and len(args) > 1 and isinstance(args[1], LifecycleError)


def _said_not_supported(error: BaseException) -> bool:
    """Whether a failed new_stream() means the peer answered "na" to every protocol offered (quirk 23)."""
    cause = error.__cause__
    return isinstance(cause, MultiselectClientError) and str(cause).startswith("protocols not supported")


def _parse_listen_addr(addr: str) -> multiaddr.Multiaddr:
    try:
        return multiaddr.Multiaddr(str(parse_listen_addr(addr)))
    except AddrError as error:
        raise ValueError(f"listen address {addr!r}: {error}") from None


def dialable(addr: str, *, names: bool = True) -> bool:
    """Whether connect() takes `addr` (gossip.addrs.parse_peer_addr); with `names` False, only by IP address."""
    try:
        parse_peer_addr(addr, names=names)
    except AddrError:
        return False
    return True


async def _resolve(addr: str, transport: TcpAddr) -> list[TcpAddr]:
    """A name's addresses as the system's resolver orders them, each once (quirk 33); HostError naming the name and
    the resolver's reason if it has none."""
    family, records = _LOOKUPS[transport.protocol]
    try:
        found = await trio.socket.getaddrinfo(transport.host, transport.port, family=family, type=socket.SOCK_STREAM)
    except OSError as error:  # socket.gaierror, with the resolver's own words
        raise HostError(f"dial {addr}: cannot resolve {transport.host!r} ({records} records): "
                        f"{error.strerror or _reason(error)}") from None
    return list(dict.fromkeys(TcpAddr("ip4" if found_family == socket.AF_INET else "ip6", sockaddr[0], transport.port)
                              for found_family, _, _, _, sockaddr in found))


def _connection_config(config: HostConfig) -> ConnectionConfig:
    """Quirk 19: ConnectionConfig refuses max_connections below its default watermarks (300 high, 100 low, 50
    minimum), so the watermarks are lowered with it; the auto-connector they drive is stopped anyway (quirk 6).
    The swarm admits max_connections - min_connections inbound connections at once: half of them, at least (the
    rest are for dials)."""
    high = min(config.max_connections, 300)
    low = min(high, 100)
    return ConnectionConfig(max_connections_per_peer=1, max_connections=config.max_connections,
                            dial_timeout=config.dial_timeout, high_watermark=high, low_watermark=low,
                            min_connections=min(low, config.max_connections // 2))


def _check_topic(topic: str) -> None:
    if not topic or len(topic) > MAX_TOPIC_LENGTH:
        raise ValueError(f"topic {topic!r}: must be 1..{MAX_TOPIC_LENGTH} characters")
