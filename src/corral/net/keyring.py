"""The cluster keyring: AES-GCM keys, one primary (encrypts) and any number accepted.

Rotation without downtime: add the new key everywhere (``add``), then make it primary everywhere
(``use``), then remove the old one (``remove``). Between the steps every member still reads what
every other member writes.

Key files hold one base64 key (16, 24 or 32 bytes) per line; the first is the primary; ``#``
starts a comment. :func:`generate_key` makes a fresh 32-byte key.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

VALID_KEY_LENGTHS = (16, 24, 32)


class KeyringError(ValueError):
    """A key or key file is unusable (wrong length, bad base64, empty, removing the primary)."""


def generate_key() -> str:
    """A new random AES-256 key, base64-encoded (one line of a key file)."""
    return base64.b64encode(os.urandom(32)).decode()


def _check(key: bytes) -> bytes:
    if len(key) not in VALID_KEY_LENGTHS:
        raise KeyringError(f"an AES key is 16, 24 or 32 bytes, not {len(key)}")
    return bytes(key)


class Keyring:
    """Ordered keys: ``keys[0]`` encrypts, all of them decrypt. ``version`` changes on every
    mutation so that caches of derived keys know when to drop out."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise KeyringError("a keyring needs at least one key")
        self._keys = [_check(k) for k in keys]
        self.version = 0

    @classmethod
    def from_file(cls, path: str | Path) -> Keyring:
        """Load a key file (see the module docstring)."""
        keys = []
        for number, line in enumerate(Path(path).read_text().splitlines(), 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                keys.append(base64.b64decode(text, validate=True))
            except (binascii.Error, ValueError):
                raise KeyringError(f"{path}:{number}: not base64") from None
        try:
            return cls(keys)
        except KeyringError as exc:
            raise KeyringError(f"{path}: {exc}") from None

    @property
    def primary(self) -> bytes:
        return self._keys[0]

    @property
    def keys(self) -> tuple[bytes, ...]:
        return tuple(self._keys)

    def add(self, key: bytes) -> None:
        """Accept ``key`` too (it does not encrypt until :meth:`use`)."""
        key = _check(key)
        if key not in self._keys:
            self._keys.append(key)
            self.version += 1

    def use(self, key: bytes) -> None:
        """Make ``key`` (added before) the primary."""
        if key not in self._keys:
            raise KeyringError("add a key before using it")
        self._keys.remove(key)
        self._keys.insert(0, key)
        self.version += 1

    def replace(self, keys: list[bytes]) -> None:
        """Take ``keys`` (primary first) as the whole ring, at once: a keyring record read from
        the store. Raises :class:`KeyringError` (and changes nothing) for an empty or bad one."""
        checked = [_check(k) for k in keys]
        if not checked:
            raise KeyringError("a keyring needs at least one key")
        if checked != self._keys:
            self._keys = checked
            self.version += 1

    def remove(self, key: bytes) -> None:
        """Stop accepting ``key``; the primary cannot be removed."""
        if key == self._keys[0]:
            raise KeyringError("cannot remove the primary key; use another one first")
        if key in self._keys:
            self._keys.remove(key)
            self.version += 1
