// Signs a vouchnet record the way a node written in JavaScript would: cborg's deterministic CBOR (RFC 8949 §4.2.1),
// which writes the number 1.0 as the integer 1, and an Ed25519 COSE_Sign1 (RFC 9052) by @libp2p/crypto.
// Usage: node sign_vouch.mjs SEED_HEX SUBJECT_DID TS WEIGHT; prints the record's bytes in hex.
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { encode, rfc8949EncodeOptions } from 'cborg'
import { base58btc } from 'multiformats/bases/base58'

const [seed, subject, ts, weight] = process.argv.slice(2)
const key = await generateKeyPairFromSeed('Ed25519', Buffer.from(seed, 'hex'))
const iss = 'did:key:' + base58btc.encode(Uint8Array.from([0xed, 0x01, ...key.publicKey.raw]))
const cbor = (value) => encode(value, rfc8949EncodeOptions)
const payload = cbor({
  v: 1, kind: 'vouch', iss, seq: 1, ts: Number(ts), body: { subject, weight: Number(weight), basis: 'operator' }
})
const prot = cbor(new Map([[1, -8]])) // alg: EdDSA
const signature = await key.sign(cbor(['Signature1', prot, new Uint8Array(0), payload]))
const sign1 = cbor([prot, {}, payload, signature])
process.stdout.write(Buffer.concat([Buffer.from([0xd2]), sign1]).toString('hex') + '\n') // tag 18: COSE_Sign1
