"""msgpack encoding of protocol messages, with a strict decoder.

A message is an array ``[type_code, field, ...]``; a packet body is an array of messages. The
decoder trusts nothing: every field is type- and length-checked, and any deviation raises
:class:`DecodeError` (never anything else), so a hostile or corrupted packet costs a counter,
not a crash. Encoded sizes stay within :func:`corral.core.membership.messages.estimated_size`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]

from corral.core.membership.messages import (
    Ack,
    Alive,
    Dead,
    MemberDigest,
    MemberState,
    Message,
    Nack,
    NodeMeta,
    Ping,
    PingReq,
    PushPull,
    Suspect,
)

MAX_NAME = 64
"""Bytes in a member name (UTF-8)."""
MAX_ADDR = 255
MAX_ROLES = 16
MAX_FIELD = 255
"""Bytes in a role, a site or an API address."""
MAX_MESSAGES = 512
"""Messages in one packet body."""
MAX_MEMBERS = 100_000
"""Entries in one push-pull."""
MAX_INT = 2**63 - 1

_PING, _PING_REQ, _ACK, _NACK, _ALIVE, _SUSPECT, _DEAD, _PUSH_PULL = range(8)


class DecodeError(ValueError):
    """The bytes are not a valid packet body."""


# ---------------------------------------------------------------- encoding


def _meta(m: NodeMeta) -> list[Any]:
    return [list(m.roles), m.site, m.api, m.store]


def _encode_one(msg: Message) -> list[Any]:
    if isinstance(msg, Ping):
        return [_PING, msg.seq, msg.target]
    if isinstance(msg, PingReq):
        return [_PING_REQ, msg.seq, msg.target, msg.target_addr, msg.nack]
    if isinstance(msg, Ack):
        return [_ACK, msg.seq]
    if isinstance(msg, Nack):
        return [_NACK, msg.seq]
    if isinstance(msg, Alive):
        return [_ALIVE, msg.name, msg.incarnation, msg.addr, _meta(msg.meta)]
    if isinstance(msg, Suspect):
        return [_SUSPECT, msg.name, msg.incarnation, msg.accuser]
    if isinstance(msg, Dead):
        return [_DEAD, msg.name, msg.incarnation, msg.accuser]
    members = [[d.name, d.addr, _meta(d.meta), d.incarnation, int(d.state)] for d in msg.members]
    return [_PUSH_PULL, msg.join, msg.reply, members]


def encode_messages(messages: tuple[Message, ...]) -> bytes:
    """The msgpack body for ``messages``."""
    data: bytes = msgpack.packb([_encode_one(m) for m in messages], use_bin_type=True)
    return data


def encoded_size(msg: Message) -> int:
    """Exact encoded size of one message (tests compare it with the core's estimate)."""
    return len(msgpack.packb(_encode_one(msg), use_bin_type=True))


# ---------------------------------------------------------------- decoding


def _int(v: object) -> int:
    if type(v) is not int or not 0 <= v <= MAX_INT:
        raise DecodeError("expected a non-negative integer")
    return v


def _str(v: object, limit: int, empty: bool = False) -> str:
    if type(v) is not str:
        raise DecodeError("expected a string")
    n = len(v.encode("utf-8", "surrogatepass"))
    if n > limit or (n == 0 and not empty):
        raise DecodeError("string length out of bounds")
    return v


def _bool(v: object) -> bool:
    if type(v) is not bool:
        raise DecodeError("expected a boolean")
    return v


def _list(v: object, lo: int, hi: int) -> list[Any]:
    if type(v) is not list or not lo <= len(v) <= hi:
        raise DecodeError("expected an array of the right length")
    return v


def _name(v: object) -> str:
    return _str(v, MAX_NAME)


def _addr(v: object) -> str:
    return _str(v, MAX_ADDR)


def _decode_meta(v: object) -> NodeMeta:
    fields = _list(v, 3, 4)  # 3: from an agent before the store field (a rolling upgrade)
    roles, site, api = fields[:3]
    store = fields[3] if len(fields) > 3 else ""
    role_list = _list(roles, 0, MAX_ROLES)
    return NodeMeta(
        tuple(_str(r, MAX_FIELD) for r in role_list),
        _str(site, MAX_FIELD, empty=True),
        _str(api, MAX_FIELD, empty=True),
        _str(store, MAX_FIELD, empty=True),
    )


def _decode_digest(v: object) -> MemberDigest:
    name, addr, meta, inc, state = _list(v, 5, 5)
    code = _int(state)
    if code > MemberState.LEFT:
        raise DecodeError("unknown member state")
    return MemberDigest(_name(name), _addr(addr), _decode_meta(meta), _int(inc), MemberState(code))


def _d_ping(f: list[Any]) -> Message:
    return Ping(_int(f[0]), _name(f[1]))


def _d_ping_req(f: list[Any]) -> Message:
    return PingReq(_int(f[0]), _name(f[1]), _addr(f[2]), _bool(f[3]))


def _d_ack(f: list[Any]) -> Message:
    return Ack(_int(f[0]))


def _d_nack(f: list[Any]) -> Message:
    return Nack(_int(f[0]))


def _d_alive(f: list[Any]) -> Message:
    return Alive(_name(f[0]), _int(f[1]), _addr(f[2]), _decode_meta(f[3]))


def _d_suspect(f: list[Any]) -> Message:
    return Suspect(_name(f[0]), _int(f[1]), _name(f[2]))


def _d_dead(f: list[Any]) -> Message:
    return Dead(_name(f[0]), _int(f[1]), _name(f[2]))


def _d_push_pull(f: list[Any]) -> Message:
    members = _list(f[2], 0, MAX_MEMBERS)
    return PushPull(_bool(f[0]), _bool(f[1]), tuple(_decode_digest(d) for d in members))


# type code -> (number of fields, decoder)
_DECODERS: dict[int, tuple[int, Callable[[list[Any]], Message]]] = {
    _PING: (2, _d_ping),
    _PING_REQ: (4, _d_ping_req),
    _ACK: (1, _d_ack),
    _NACK: (1, _d_nack),
    _ALIVE: (4, _d_alive),
    _SUSPECT: (3, _d_suspect),
    _DEAD: (3, _d_dead),
    _PUSH_PULL: (3, _d_push_pull),
}


def decode_messages(data: bytes, max_size: int) -> tuple[Message, ...]:
    """Parse a packet body of at most ``max_size`` bytes; raises only :class:`DecodeError`."""
    if len(data) > max_size:
        raise DecodeError("body too large")
    try:
        raw = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=max_size,
            max_bin_len=0,
            max_array_len=MAX_MEMBERS,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException) as exc:  # ExtraData, FormatError, UTF-8...
        raise DecodeError(f"not msgpack: {type(exc).__name__}") from None
    items = _list(raw, 1, MAX_MESSAGES)
    out = []
    for item in items:
        fields = _list(item, 1, 8)
        code = fields[0]
        if type(code) is not int or code not in _DECODERS:
            raise DecodeError("unknown message type")
        arity, decoder = _DECODERS[code]
        if len(fields) != arity + 1:
            raise DecodeError("wrong number of fields")
        out.append(decoder(fields[1:]))
    return tuple(out)
