// A js-libp2p peer for the interop tests (tests/interop/js_peer.py drives it): TCP, Noise, yamux, identify and
// GossipSub with the libraries' defaults (StrictSign, spec message ids). It is keyed by the Ed25519 seed in
// VOUCHNET_INTEROP_SEED (hex), if set. Commands arrive on stdin and events leave on stdout, one JSON object a line:
//   {"dial": MULTIADDR}             -> {"event": "dialed", "peer", "encryption", "multiplexer"}
//   {"subscribe": TOPIC}            -> {"event": "subscribed", "topic"}
//   {"unsubscribe": TOPIC}          -> {"event": "unsubscribed", "topic"}   (PRUNEs its mesh, with a backoff)
//   {"heartbeats": N}               -> {"event": "heartbeats", "count"}   after N GossipSub heartbeats
//   {"mesh": TOPIC}                 -> {"event": "mesh", "topic", "peers"}
//   {"await_mesh": {"topic", "peer"}} -> {"event": "in_mesh", "topic", "peer"}   once the peer is in our mesh
//   {"score": PEER}                 -> {"event": "score", "peer", "score"}   GossipSub's score of the peer
//   {"publish": {"topic", "data"}}  -> {"event": "published", "recipients"}   (data in hex)
//   {"cosign": {"peer", "network", "size", "root"}} -> {"event": "cosign_reply", "note", "reply"}
//       asks the peer, over /vouchnet/sync/1, to witness a checkpoint of our own records log (root in hex),
//       signed here as a C2SP signed note; "note" is that note, "reply" the peer's answer (byte strings in hex)
//   {"sync": {"peer", "issuer"}}    -> {"event": "synced", "heads", "records", "pages"}
//       catch-up sync as a client of /vouchnet/sync/1 (gossip/sync_messages.py): the peer's heads, then every
//       record of `issuer` in pages of 100, over one stream; heads as [iss, seq, id hex], records as hex.
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
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { decode, encode, rfc8949EncodeOptions } from 'cborg'
import { base58btc } from 'multiformats/bases/base58'
import { createHash } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'

const say = (event) => process.stdout.write(JSON.stringify(event) + '\n')
const hex = (bytes) => Buffer.from(bytes).toString('hex')
const SYNC_PROTOCOL = '/vouchnet/sync/1'
const MAX_SEQ = 2n ** 63n - 1n
const seed = process.env.VOUCHNET_INTEROP_SEED

const privateKey = seed ? await generateKeyPairFromSeed('Ed25519', Buffer.from(seed, 'hex')) : undefined
const node = await createLibp2p({
  ...(privateKey ? { privateKey } : {}),
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
  } else if (cmd.unsubscribe) {
    pubsub.unsubscribe(cmd.unsubscribe)
    return { event: 'unsubscribed', topic: cmd.unsubscribe }
  } else if (cmd.heartbeats) {
    for (let i = 0; i < cmd.heartbeats; i++) {
      await new Promise((resolve) => pubsub.addEventListener('gossipsub:heartbeat', resolve, { once: true }))
    }
    return { event: 'heartbeats', count: cmd.heartbeats }
  } else if (cmd.mesh) {
    return { event: 'mesh', topic: cmd.mesh, peers: pubsub.getMeshPeers(cmd.mesh).map(String) }
  } else if (cmd.await_mesh) {
    const { topic, peer } = cmd.await_mesh
    while (!pubsub.getMeshPeers(topic).map(String).includes(peer)) {
      await new Promise((resolve) => pubsub.addEventListener('gossipsub:graft', resolve, { once: true }))
    }
    return { event: 'in_mesh', topic, peer }
  } else if (cmd.score) {
    return { event: 'score', peer: cmd.score, score: pubsub.getScore(cmd.score) }
  } else if (cmd.cosign) {
    return { event: 'cosign_reply', ...await cosign(cmd.cosign) }
  } else if (cmd.sync) {
    return { event: 'synced', ...await sync(cmd.sync.peer, cmd.sync.issuer) }
  } else if (cmd.publish) {
    const result = await pubsub.publish(cmd.publish.topic, Buffer.from(cmd.publish.data, 'hex'))
    return { event: 'published', recipients: result.recipients.length }
  }
  throw new Error(`unknown command ${JSON.stringify(cmd)}`)
}

// Each message a deterministic CBOR map in one length-prefixed frame. A heads request gets one page (ask again
// after its last issuer while `more`); a records request gets pages until one says more = false.
async function sync (peer, issuer) {
  const stream = await node.dialProtocol(peerIdFromString(peer), SYNC_PROTOCOL)
  const frames = lpStream(stream, { maxDataLength: 4 * 1024 * 1024 })
  async function reply (expected) {
    const message = decode((await frames.read()).subarray())
    if (message.t !== expected) throw new Error(`expected ${expected}, got ${JSON.stringify(message)}`)
    return message
  }
  const send = (request) => frames.write(encode(request, rfc8949EncodeOptions))
  const heads = []
  for (let page = { more: true }; page.more;) {
    await send({ t: 'heads', after: heads.at(-1)?.[0] ?? '', limit: 100 })
    page = await reply('heads')
    heads.push(...page.heads.map(([iss, seq, id]) => [iss, Number(seq), hex(id)]))
  }
  const records = []
  let pages = 0
  await send({ t: 'get', ranges: [[issuer, 1, MAX_SEQ]], limit: 100, bytes: 1024 * 1024 })  // pages of 100
  for (let page = { more: true }; page.more;) {
    page = await reply('records')
    records.push(...page.records.map(hex))
    pages += 1
  }
  await stream.close()
  return { heads, records, pages }
}

// c2sp.org/tlog-checkpoint signed by c2sp.org/signed-note rules (Ed25519, type 0x01), sent as a
// c2sp.org/tlog-witness add-checkpoint body (old size 0, no proof) in a {"t": "cosign"} message.
async function cosign ({ peer, network, size, root }) {
  const publicKey = privateKey.publicKey.raw
  const did = 'did:key:' + base58btc.encode(Uint8Array.from([0xed, 0x01, ...publicKey]))
  const origin = `vouchnet/${network}/${did}/records`
  const text = `${origin}\n${size}\n${Buffer.from(root, 'hex').toString('base64')}\n`
  const keyId = createHash('sha256').update(Buffer.concat([Buffer.from(`${origin}\n`), Buffer.from([0x01]),
    publicKey])).digest().subarray(0, 4)
  const signature = await privateKey.sign(Buffer.from(text))
  const note = `${text}\n\u2014 ${origin} ${Buffer.concat([keyId, signature]).toString('base64')}\n`
  const stream = await node.dialProtocol(peerIdFromString(peer), SYNC_PROTOCOL)
  const frames = lpStream(stream)
  const body = new Uint8Array(Buffer.from(`old 0\n\n${note}`))
  await frames.write(encode({ t: 'cosign', req: body }, rfc8949EncodeOptions))
  const reply = decode((await frames.read()).subarray())
  await stream.close()
  return { note: hex(Buffer.from(note)), reply: Object.fromEntries(Object.entries(reply).map(([key, value]) =>
    [key, value instanceof Uint8Array ? hex(value) : value])) }
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
