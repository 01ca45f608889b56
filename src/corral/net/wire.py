"""The authenticated, encrypted envelope around a packet body, with replay protection.

Layout (all integers big-endian)::

    version:1 | name_len:1 | sender name | boot:8 | seq:8 | timestamp:8 (float64) | ciphertext+tag

- The header is authenticated as AES-GCM associated data; only the body is encrypted.
- Each (key, sender, boot) gets its own subkey, ``HKDF-SHA256(key, info=name|boot)``, and the
  nonce is the sender's packet counter: nonces never repeat under a subkey, with no birthday
  bound on the number of packets a cluster may send under one key.
- ``boot`` identifies a sender's process lifetime (nanoseconds of wall clock at start, so a
  restart moves it forward). A receiver keeps, per sender, the newest boot and a sliding window
  of the last ``window`` sequence numbers: a repeated or older packet is a replay. A packet of an
  older boot is a replay too. ``timestamp`` must be within ``max_skew`` of the receiver's wall
  clock: that bounds replays to a receiver that restarted and lost its windows.

Every rejected input is counted in :class:`Drops` by reason, and :meth:`Wire.open` returns
``None``; nothing here raises on input bytes.
"""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from corral.core.membership.messages import Message, Packet
from corral.net.codec import MAX_NAME, DecodeError, decode_messages, encode_messages
from corral.net.keyring import Keyring

VERSION = 1
TAG = 16
_TAIL = struct.Struct(">QQd")
_SALT = b"corral-gossip-v1"
MAX_PACKET = 1400
"""Largest datagram we send or accept: fits a 1500-byte Ethernet MTU with IP/UDP headers."""
MAX_STREAM = 32 * 1024 * 1024
"""Largest push-pull frame (about 150,000 members)."""


@dataclass(slots=True)
class Drops:
    """Rejected inputs by reason (monotonic counters)."""

    oversized: int = 0
    malformed: int = 0
    """Bad header, or a body that decrypts but does not decode."""
    unauthenticated: int = 0
    """No key in the ring opens it (forged, corrupted, or a key we do not have)."""
    replayed: int = 0
    stale: int = 0
    """Timestamp further than ``max_skew`` from our wall clock."""
    version: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())


class _Window:
    __slots__ = ("bits", "boot", "top")

    def __init__(self, boot: int, seq: int) -> None:
        self.boot = boot
        self.top = seq
        self.bits = 1


class Wire:
    """Seals outgoing packets of one member and opens incoming ones."""

    def __init__(
        self,
        name: str,
        keyring: Keyring,
        wall: Callable[[], float] = time.time,
        boot: int | None = None,
        max_packet: int = MAX_PACKET,
        max_stream: int = MAX_STREAM,
        max_skew: float = 30.0,
        window: int = 1024,
        max_senders: int = 100_000,
    ) -> None:
        raw = name.encode()
        if not 0 < len(raw) <= MAX_NAME:
            raise ValueError(f"a member name is 1-{MAX_NAME} bytes of UTF-8")
        self.name = name
        self.keyring = keyring
        self._wall = wall
        self.boot = boot if boot is not None else time.time_ns()
        self.max_packet = max_packet
        self.max_stream = max_stream
        self.max_skew = max_skew
        self.window = window
        self.max_senders = max_senders
        self.drops = Drops()
        self._seq = 0
        self._prefix = bytes([VERSION, len(raw)]) + raw
        self._ciphers: OrderedDict[tuple[bytes, str, int], AESGCM] = OrderedDict()
        self._cipher_version = keyring.version
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    # ---------------------------------------------------------------- sealing

    def _cipher(self, key: bytes, name: str, boot: int) -> AESGCM:
        if self._cipher_version != self.keyring.version:
            self._ciphers.clear()
            self._cipher_version = self.keyring.version
        cache_key = (key, name, boot)
        cipher = self._ciphers.get(cache_key)
        if cipher is None:
            info = b"packet|" + name.encode() + b"|" + boot.to_bytes(8, "big")
            sub = HKDF(hashes.SHA256(), len(key), _SALT, info).derive(key)
            cipher = AESGCM(sub)
        return cipher

    def _remember(self, key: bytes, name: str, boot: int, cipher: AESGCM) -> None:
        self._ciphers[(key, name, boot)] = cipher
        self._ciphers.move_to_end((key, name, boot))
        while len(self._ciphers) > 4096:
            self._ciphers.popitem(last=False)

    def seal(self, messages: tuple[Message, ...], stream: bool = False) -> bytes:
        """Envelope for ``messages``. Raises ``ValueError`` if it exceeds the size limit: the
        core's budget makes that a bug, not an input error."""
        self._seq += 1
        header = self._prefix + _TAIL.pack(self.boot, self._seq, self._wall())
        key = self.keyring.primary
        cipher = self._cipher(key, self.name, self.boot)
        self._remember(key, self.name, self.boot, cipher)
        nonce = b"\0\0\0\0" + self._seq.to_bytes(8, "big")
        data = header + cipher.encrypt(nonce, encode_messages(messages), header)
        limit = self.max_stream if stream else self.max_packet
        if len(data) > limit:
            raise ValueError(f"sealed packet of {len(data)} bytes exceeds {limit}")
        return data

    # ---------------------------------------------------------------- opening

    def open(self, data: bytes, stream: bool = False) -> Packet | None:
        """The packet in ``data``, or ``None`` (counted in :attr:`drops`) if it is oversized,
        malformed, unauthenticated, replayed or stale."""
        drops = self.drops
        if len(data) > (self.max_stream if stream else self.max_packet):
            drops.oversized += 1
            return None
        if len(data) < 2 + 1 + _TAIL.size + TAG:
            drops.malformed += 1
            return None
        if data[0] != VERSION:
            drops.version += 1
            return None
        end = 2 + data[1]
        if data[1] == 0 or len(data) < end + _TAIL.size + TAG:
            drops.malformed += 1
            return None
        try:
            name = data[2:end].decode()
        except UnicodeDecodeError:
            drops.malformed += 1
            return None
        boot, seq, stamp = _TAIL.unpack_from(data, end)
        header = data[: end + _TAIL.size]
        if seq == 0 or self._seen(name, boot, seq):
            drops.replayed += 1
            return None
        body = self._decrypt(name, boot, seq, header, data[len(header) :])
        if body is None:
            drops.unauthenticated += 1
            return None
        if not abs(stamp - self._wall()) <= self.max_skew:  # also rejects NaN
            drops.stale += 1
            return None
        try:
            messages = decode_messages(body, self.max_stream if stream else self.max_packet)
        except DecodeError:
            drops.malformed += 1
            return None
        self._commit(name, boot, seq)
        return Packet(name, messages)

    def _decrypt(
        self, name: str, boot: int, seq: int, header: bytes, sealed: bytes
    ) -> bytes | None:
        nonce = b"\0\0\0\0" + seq.to_bytes(8, "big")
        for key in self.keyring.keys:
            cipher = self._cipher(key, name, boot)
            try:
                body = cipher.decrypt(nonce, sealed, header)
            except InvalidTag:
                continue
            # Cache only what authenticated: forged headers must not evict real senders.
            self._remember(key, name, boot, cipher)
            return body
        return None

    def _seen(self, name: str, boot: int, seq: int) -> bool:
        w = self._windows.get(name)
        if w is None or boot > w.boot:
            return False
        if boot < w.boot:
            return True
        if seq > w.top:
            return False
        age = w.top - seq
        return age >= self.window or bool(w.bits >> age & 1)

    def _commit(self, name: str, boot: int, seq: int) -> None:
        w = self._windows.get(name)
        if w is None or boot > w.boot:
            self._windows[name] = _Window(boot, seq)
            self._windows.move_to_end(name)
            while len(self._windows) > self.max_senders:
                self._windows.popitem(last=False)
            return
        if seq > w.top:
            w.bits = ((w.bits << (seq - w.top)) | 1) & ((1 << self.window) - 1)
            w.top = seq
        else:
            w.bits |= 1 << (w.top - seq)
