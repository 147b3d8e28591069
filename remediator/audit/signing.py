"""Signed checkpoints of the audit chain: a key outside the database vouches for its head.

The chain (remediator/audit/events.py) is unkeyed: anyone who can write to the database can
recompute every hash after a change and move the head. A checkpoint is the head at one moment
(``seq``: the id of the last record, ``hash``: its hash, ``time``) signed with an Ed25519 private
key that lives in a file (``audit.signing_key_file``), never in the store. The process that holds
the key appends each checkpoint to the chain (``audit:signed_checkpoint``) and exports it: a log
line, a metric, the webhook notifiers. ``remediator audit verify --public-key`` needs only the
public key; with ``--checkpoint`` it also checks a checkpoint held outside the store, so a chain
rewritten below it (records deleted, inserted or changed, the tail and head recomputed) no longer
matches.

Ed25519 rather than HMAC: a verifier (an auditor, another system) holds only the public key and
cannot forge a checkpoint with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DOMAIN = b"remediator-audit-checkpoint/v1\n"
DIGEST_CHARS = 16  # the short digest of the head's hash that is exported
MIN_DIGEST_CHARS = 8
SPEC = re.compile(r"\d+:[0-9a-fA-F]+")  # a line of exported checkpoints (parse_spec checks it)


class KeyFileError(ValueError):
    """A key file that cannot be used (missing, unreadable, too open, not a key)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain's head at ``time``: record ``seq`` with hash ``hash``; ``signature`` (base64) by
    the key whose id is ``key_id`` (empty until signed)."""

    seq: int
    hash: str
    time: float
    signature: str = ""
    key_id: str = ""

    def payload(self) -> bytes:
        """The signed bytes: a domain prefix and the canonical JSON of seq, hash and time."""
        body = json.dumps(
            {"hash": self.hash, "seq": self.seq, "time": self.time},
            sort_keys=True,
            separators=(",", ":"),
        )
        return DOMAIN + body.encode()

    @property
    def digest(self) -> str:
        return self.hash[:DIGEST_CHARS]

    def spec(self) -> str:
        """``SEQ:DIGEST``, what ``audit verify --checkpoint`` takes."""
        return f"{self.seq}:{self.digest}"

    def details(self) -> dict[str, Any]:
        """The checkpoint as recorded in its event's details and exported."""
        return {
            "seq": self.seq,
            "hash": self.hash,
            "digest": self.digest,
            "signed_at": self.time,
            "signature": self.signature,
            "key_id": self.key_id,
        }

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> Checkpoint:
        return cls(
            seq=int(details["seq"]),
            hash=str(details["hash"]),
            time=float(details["signed_at"]),
            signature=str(details.get("signature", "")),
            key_id=str(details.get("key_id", "")),
        )

    def verified(self, public: Ed25519PublicKey) -> bool:
        """Whether ``signature`` is this checkpoint's, by the private key of ``public``."""
        try:
            public.verify(base64.b64decode(self.signature, validate=True), self.payload())
        except (InvalidSignature, ValueError):
            return False
        return True


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name of a key: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, *, seq: int, hash_: str, now: float) -> Checkpoint:
    unsigned = Checkpoint(seq=seq, hash=hash_, time=now)
    signature = base64.b64encode(key.sign(unsigned.payload())).decode()
    return Checkpoint(seq, hash_, now, signature, key_id(key.public_key()))


def load_private(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file at ``path``; refused, like ssh does, when the
    file is readable or writable by its group or others."""
    file = Path(path)
    try:
        mode = file.stat().st_mode
        data = file.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"audit.signing_key_file: cannot read {file}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"audit.signing_key_file: {file} is accessible by its group or others "
            f"(mode {stat.S_IMODE(mode):04o}); `chmod 600 {file}`"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(
            f"audit.signing_key_file: {file} is not an unencrypted PEM private key "
            "(make one with `remediator audit keygen`)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"audit.signing_key_file: {file} is not an Ed25519 key")
    return key


def load_public(path: str | Path) -> Ed25519PublicKey:
    """The Ed25519 public key in the PEM file at ``path`` (a private key file gives its public
    key, read under the same rules as :func:`load_private`)."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{file}: cannot read: {exc.strerror}") from None
    if b"PRIVATE KEY" in data:
        return load_private(file).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise KeyFileError(f"{file}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{file}: not an Ed25519 key")
    return key


def keygen(path: str | Path) -> tuple[Path, Path]:
    """Write a new Ed25519 private key to ``path`` (mode 0600, never over an existing file) and
    its public key beside it (``path`` + ``.pub``); both paths."""
    private = Path(path)
    public = private.with_name(private.name + ".pub")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def parse_spec(text: str) -> tuple[int, str]:
    """``SEQ:DIGEST`` (at least 8 hex digits of the head's hash) as (seq, digest)."""
    seq, sep, digest = text.strip().partition(":")
    digest = digest.strip().lower()
    if (
        not sep
        or not seq.strip().isdigit()
        or len(digest) < MIN_DIGEST_CHARS
        or any(c not in "0123456789abcdef" for c in digest)
    ):
        raise ValueError(
            f"{text.strip()!r} is not SEQ:DIGEST (a record id and at least "
            f"{MIN_DIGEST_CHARS} hex digits of its hash)"
        )
    return int(seq), digest


def parse_exported(text: str) -> list[tuple[int, str]]:
    """The checkpoints in exported text: lines ``SEQ:DIGEST``, or JSON log lines carrying
    ``seq`` and ``hash`` (or ``digest``); other lines are skipped."""
    found: list[tuple[int, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if (
                isinstance(entry, dict)
                and "seq" in entry
                and ("hash" in entry or "digest" in entry)
            ):
                found.append(parse_spec(f"{entry['seq']}:{entry.get('hash') or entry['digest']}"))
        elif SPEC.fullmatch(line):
            found.append(parse_spec(line))
    return found
