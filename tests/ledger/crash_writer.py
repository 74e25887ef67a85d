"""The process the crash-safety harness kills: appends batches to a ledger until killed.

`python -m tests.ledger.crash_writer PATH SEED` prints "ready" once the ledger is open, then "FIRST COUNT NOTE"
after each append returns (so that batch is acknowledged as durable), NOTE being the base64 of the C2SP
checkpoint it signed for the new size. Imports nothing but the standard library, PyNaCl and ledger.
"""

import base64
import hashlib
import os
import random
import sys

from nacl.signing import SigningKey

from ledger import Checkpoint, Ed25519Signer, Ledger

ORIGIN = "vouchnet/crash-test/log"
KEY = SigningKey(hashlib.sha256(b"the crash-test log key").digest())

# Mostly small batches (many commits per run), some that span many entry rows and tiles.
BATCH_SIZES = (1, 1, 2, 3, 16, 17, 40, 100, 600)


def expected_entry(index: int) -> bytes:
    """Entry `index` of every crash-test ledger: it depends on the index alone, so any reader can check it."""
    return str(index).encode() + hashlib.sha256(index.to_bytes(8, "big")).digest() * (index % 4)


def main() -> None:
    path, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    signer = Ed25519Signer(ORIGIN, KEY)
    with Ledger.open(path) as ledger:
        os.write(1, b"ready\n")
        while True:
            n = rng.choice(BATCH_SIZES)
            first = ledger.append([expected_entry(i) for i in range(ledger.size, ledger.size + n)])
            note = Checkpoint(ORIGIN, ledger.size, ledger.root()).sign([signer])
            os.write(1, f"{first} {n} {base64.b64encode(note).decode()}\n".encode())


if __name__ == "__main__":
    main()
