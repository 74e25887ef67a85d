// js-libp2p 3 calls Promise.withResolvers, which Node.js has from version 22; Node.js 20 is what CI machines
// carry. peer.mjs imports this module first, so the shim is in place before any libp2p code runs.
Promise.withResolvers ??= function withResolvers () {
  let resolve, reject
  const promise = new Promise((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}
