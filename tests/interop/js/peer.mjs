// A js-libp2p peer for the interop tests (tests/interop/js_peer.py drives it): TCP, Noise, yamux, identify and
// GossipSub with the libraries' defaults (StrictSign, spec message ids). It is keyed by the Ed25519 seed in
// VOUCHNET_INTEROP_SEED (hex), if set. Commands arrive on stdin and events leave on stdout, one JSON object a line:
//   {"dial": MULTIADDR}             -> {"event": "dialed", "peer", "encryption", "multiplexer"}
//   {"subscribe": TOPIC}            -> {"event": "subscribed", "topic"}
//   {"mesh": TOPIC}                 -> {"event": "mesh", "topic", "peers"}
//   {"await_mesh": {"topic", "peer"}} -> {"event": "in_mesh", "topic", "peer"}   once the peer is in our mesh
//   {"publish": {"topic", "data"}}  -> {"event": "published", "recipients"}   (data in hex)
// and unprompted: {"event": "ready", "peer", "addrs"} once, then {"event": "message", "topic", "from", "data"}.
// At the end of stdin the peer stops, says {"event": "stopped"} and exits.
// A command that fails answers {"event": "error", "command", "error"}.
import './node20.mjs'
import readline from 'node:readline'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'

const say = (event) => process.stdout.write(JSON.stringify(event) + '\n')
const seed = process.env.VOUCHNET_INTEROP_SEED

const node = await createLibp2p({
  ...(seed ? { privateKey: await generateKeyPairFromSeed('Ed25519', Buffer.from(seed, 'hex')) } : {}),
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: false }) }
})
const pubsub = node.services.pubsub
pubsub.addEventListener('message', (evt) => {
  const m = evt.detail
  say({ event: 'message', topic: m.topic, from: m.from?.toString(), data: Buffer.from(m.data).toString('hex') })
})
say({ event: 'ready', peer: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) })

async function run (cmd) {
  if (cmd.dial) {
    const conn = await node.dial(multiaddr(cmd.dial))
    return { event: 'dialed', peer: conn.remotePeer.toString(), encryption: conn.encryption, multiplexer: conn.multiplexer }
  } else if (cmd.subscribe) {
    pubsub.subscribe(cmd.subscribe)
    return { event: 'subscribed', topic: cmd.subscribe }
  } else if (cmd.mesh) {
    return { event: 'mesh', topic: cmd.mesh, peers: pubsub.getMeshPeers(cmd.mesh).map(String) }
  } else if (cmd.await_mesh) {
    const { topic, peer } = cmd.await_mesh
    while (!pubsub.getMeshPeers(topic).map(String).includes(peer)) {
      await new Promise((resolve) => pubsub.addEventListener('gossipsub:graft', resolve, { once: true }))
    }
    return { event: 'in_mesh', topic, peer }
  } else if (cmd.publish) {
    const result = await pubsub.publish(cmd.publish.topic, Buffer.from(cmd.publish.data, 'hex'))
    return { event: 'published', recipients: result.recipients.length }
  }
  throw new Error(`unknown command ${JSON.stringify(cmd)}`)
}

for await (const line of readline.createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line)
  try {
    say(await run(cmd))
  } catch (err) {
    say({ event: 'error', command: Object.keys(cmd)[0], error: String(err) })
  }
}
await node.stop()
say({ event: 'stopped' })
