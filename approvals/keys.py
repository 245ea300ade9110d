"""The link signing keys: read from Secrets Manager, kept per container, rotated by operators.

The secret's versions are the key ring: ``AWSCURRENT`` signs, ``AWSPREVIOUS`` still
verifies. Writing a new value (:func:`rotate`) makes it current and the old one previous,
so every link in flight, signed or short, keeps working through one rotation; a second
rotation retires the key before it (the way to revoke every older link of either kind).

A container keeps the ring it read. It reads it again when a link needs a key it does not
hold (another container may already sign with a newer key), at most once per
``REFRESH_SECONDS`` so made-up links cannot turn every request into a Secrets Manager
call; and when the ring is older than ``MAX_AGE_SECONDS``, so a warm container stops
signing with a key that a later rotation retires, and stops taking that key's links.
"""

from __future__ import annotations

import secrets as random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from approvals.links import KeyRing, SigningKey

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

REFRESH_SECONDS = 30.0
MAX_AGE_SECONDS = 600.0
NEW_KEY_BYTES = 48  # 64 characters of URL-safe base64


def fetch(client: SecretsManagerClient, secret_id: str) -> KeyRing:
    """The secret's current and previous versions (a secret never rotated has no previous)."""
    current = client.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
    try:
        previous = client.get_secret_value(SecretId=secret_id, VersionStage="AWSPREVIOUS")
    except client.exceptions.ResourceNotFoundException:
        return KeyRing(SigningKey(current["SecretString"].encode()))
    return KeyRing(
        SigningKey(current["SecretString"].encode()), SigningKey(previous["SecretString"].encode())
    )


def rotate(client: SecretsManagerClient, secret_id: str) -> KeyRing:
    """Make a new random key current; the current one becomes previous. Returns the new ring."""
    client.put_secret_value(SecretId=secret_id, SecretString=random.token_urlsafe(NEW_KEY_BYTES))
    return fetch(client, secret_id)


class Keys:
    """One container's key ring, read at its first use and refreshed as the module says."""

    def __init__(
        self,
        client: SecretsManagerClient,
        secret_id: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._secret_id = secret_id
        self._clock = clock
        self._lock = threading.Lock()
        self._ring: KeyRing | None = None
        self._read_at = 0.0

    def _read(self, stale: Callable[[KeyRing, float], bool]) -> KeyRing:
        with self._lock:
            age = self._clock() - self._read_at
            if self._ring is None or stale(self._ring, age):
                self._ring = fetch(self._client, self._secret_id)
                self._read_at = self._clock()
            return self._ring

    def signing(self) -> SigningKey:
        """The key new links are signed with."""
        return self._read(lambda _, age: age >= MAX_AGE_SECONDS).current

    def verifying(self, key_id: str) -> KeyRing:
        """The keys to check a signed link naming ``key_id`` against ("" for one without)."""
        return self.holding(lambda ring: not key_id or ring.knows(key_id))

    def holding(self, holds: Callable[[KeyRing], bool]) -> KeyRing:
        """The keys to check a link against; ``holds`` tells whether a ring has the link's key."""
        return self._read(
            lambda ring, age: age >= MAX_AGE_SECONDS or (not holds(ring) and age >= REFRESH_SECONDS)
        )
