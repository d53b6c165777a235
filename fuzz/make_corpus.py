"""Write the seed corpus of ``fuzz_middleware.py`` to ``fuzz/corpus/`` (deterministic).

Each seed is ``[config, extras, mode] + rest`` as ``fuzz_middleware.test_one_input`` reads it.
Seeds hold no signed token (the identity provider's key is made anew in each process); mode 2
seeds edit the token minted at start-up instead. Run it again after changing the input format:
``tests/test_fuzz_target.py`` fails when the committed corpus differs from what this writes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

CORPUS = Path(__file__).with_name("corpus")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _parts(header: dict[str, object], payload: dict[str, object], signature: bytes) -> bytes:
    return json.dumps(header).encode() + b"\0" + json.dumps(payload).encode() + b"\0" + signature


CLAIMS = {"preferred_username": "alice", "roles": ["r1", "r2"], "exp": 4102444800}
SEEDS: list[bytes] = [
    bytes([0, 0, 0]) + b"alice",
    bytes([0, 0x10, 0]) + b"bob",
    bytes([0, 1, 0]) + b"alice",  # a stranger: the header is ignored
    bytes([1, 0, 0]) + json.dumps({"preferred_username": "alice", "roles": ["r1"]}).encode(),
    bytes([1, 0, 0]) + b'{"preferred_username": "a", "preferred_username": "b"}',
    bytes([1, 0x40, 0]) + b'{"preferred_username": ["a"]}',
    bytes([2, 0, 1]) + _parts({"alg": "RS256", "typ": "JWT"}, CLAIMS, b"sig"),
    bytes([2, 0, 1]) + _parts({"alg": "none"}, CLAIMS, b""),
    bytes([2, 0, 1]) + _parts({"alg": "RS256", "crit": ["exp"]}, CLAIMS, b"sig"),
    bytes([3, 0, 1]) + _parts({"alg": "RS256"}, {**CLAIMS, "exp": "4102444800"}, b"s"),
    bytes([3, 0, 1]) + _parts({"alg": "RS256"}, {**CLAIMS, "exp": 1e400}, b"s"),
    bytes([4, 0, 2]),  # the minted token as it is, without a scheme
    bytes([4, 0, 2]) + b"\x05\x41\x10\x2e",  # two edits, with Bearer
    bytes([4, 0, 2]) + b"\xff\x2e\x01",  # an edit near the end, no scheme
    bytes([4, 0, 1]) + _parts({"alg": "HS256", "kid": "x"}, CLAIMS, b"k" * 32),
    bytes([4, 0, 1]) + _parts({"alg": "RS256", "jku": "http://127.0.0.1:1/"}, CLAIMS, b"s"),
    bytes([4, 0, 0]) + b"Basic YWxpY2U6c2VjcmV0",
    bytes([4, 0, 0]) + b"Bearer " + _b64(b'{"alg":"RS256"}') + b"..",
]


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    for old in CORPUS.iterdir():
        old.unlink()
    for seed in SEEDS:
        (CORPUS / hashlib.sha256(seed).hexdigest()[:16]).write_bytes(seed)


if __name__ == "__main__":
    main()
