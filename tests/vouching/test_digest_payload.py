"""The digest payload assembled directly is byte for byte the deterministic encoding of the payload map."""

from hypothesis import given

from vouching import issue_record
from vouching.cbor import encode
from vouching.digest_payload import encode_digest_payload

from .record_strategies import RecordArgs, record_args


@given(record_args(kinds=("digest",)))
def test_the_payload_is_the_encoding_of_the_map_sign_record_signs(args: RecordArgs) -> None:
    body = issue_record(args.key, "digest", args.body, seq=args.seq, prev=args.prev, ts=args.ts).body
    payload = {"v": 1, "kind": "digest", "iss": args.iss, "seq": args.seq, "ts": args.ts, "body": args.body}
    if args.prev is not None:
        payload["prev"] = args.prev
    assert encode_digest_payload(args.iss, args.seq, args.prev, args.ts, body) == encode(payload)
