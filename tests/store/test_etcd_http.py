"""LeaseRenewer against a real TCP server that answers like etcd's gateway, and unlike it
(errors, garbage, a closed connection, an answer split in pieces). The happy path against a
real etcd is in test_lease_renewals.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from corral.store._etcd_http import GatewayError, LeaseRenewer
from corral.store._etcd_wire import Failure, classify

Answer = Callable[[int, bytes], list[bytes]]
"""(request number, request body) -> the pieces to write back, in order."""


def chunked(*lines: bytes, close: bool = False) -> list[bytes]:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    head += b"Connection: close\r\n\r\n" if close else b"\r\n"
    pieces = [head]
    pieces += [b"%x\r\n%s\r\n" % (len(line), line) for line in lines]
    pieces.append(b"0\r\n\r\n")
    return pieces


def result(lease: str, ttl: int | None) -> bytes:
    doc: dict[str, object] = {"header": {"revision": "1"}, "ID": lease}
    if ttl is not None:
        doc["TTL"] = str(ttl)
    return json.dumps({"result": doc}).encode() + b"\n"


class Gateway:
    """A TCP server: reads one HTTP request at a time and writes ``answer``'s pieces."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")[1:]
                headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append((headers, body))
                for piece in self.answer(len(self.requests), body):
                    if piece == b"<close>":
                        writer.close()
                        return
                    if piece == b"<pause>":
                        await asyncio.sleep(0.05)
                        continue
                    writer.write(piece)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


Make = Callable[[Answer], Awaitable[tuple[LeaseRenewer, Gateway]]]


@pytest.fixture
async def gateway() -> AsyncIterator[Make]:
    made: list[tuple[LeaseRenewer, Gateway]] = []

    async def make(answer: Answer) -> tuple[LeaseRenewer, Gateway]:
        gw = Gateway(answer)
        made.append((LeaseRenewer("127.0.0.1", await gw.start()), gw))
        return made[-1]

    yield make
    for renewer, gw in made:
        renewer.close()
        assert gw.server is not None
        gw.server.close()


async def test_renewals_reuse_the_connection_and_carry_the_leader_flag(gateway: Make) -> None:
    renewer, gw = await gateway(lambda n, body: chunked(result(json.loads(body)["ID"], 7)))
    for _ in range(5):
        assert await renewer.renew(0x1234) == 7
    assert gw.connections == 1 and len(gw.requests) == 5
    headers, body = gw.requests[0]
    assert headers["grpc-metadata-hasleader"] == "true"
    assert json.loads(body) == {"ID": str(0x1234)}


async def test_a_gone_lease_answers_ttl_zero(gateway: Make) -> None:
    renewer, _gw = await gateway(lambda n, body: chunked(result("1", None)))
    assert await renewer.renew(1) == 0


async def test_an_answer_in_pieces_and_without_a_newline(gateway: Make) -> None:
    line = result("1", 3)
    pieces = chunked(line.rstrip(b"\n"))
    split = [pieces[0], pieces[1][:20], b"<pause>", pieces[1][20:], b"<pause>", pieces[2]]
    renewer, gw = await gateway(lambda n, body: split)
    assert await renewer.renew(1) == 3
    assert await renewer.renew(1) == 3
    assert gw.connections == 1


async def test_the_tail_of_an_answer_is_read_before_the_next_request(gateway: Make) -> None:
    """The first line answers the caller at once; the end of the chunked body (sent later)
    is consumed before the next request, so answers never shift by one."""

    def answer(n: int, body: bytes) -> list[bytes]:
        pieces = chunked(result("1", n))
        return [*pieces[:2], b"<pause>", *pieces[2:]]

    renewer, gw = await gateway(answer)
    assert [await renewer.renew(1) for _ in range(4)] == [1, 2, 3, 4]
    assert gw.connections == 1


async def test_an_error_answer_raises_with_its_code(gateway: Make) -> None:
    error = {"error": {"grpc_code": 14, "http_code": 503, "message": "etcdserver: no leader"}}
    renewer, _gw = await gateway(lambda n, body: chunked(json.dumps(error).encode() + b"\n"))
    with pytest.raises(GatewayError, match="no leader") as caught:
        await renewer.renew(1)
    assert caught.value.code == 14
    assert classify(caught.value) is Failure.NOT_SENT  # re-sent elsewhere, even a txn could be
    refused = GatewayError(7, "etcdserver: permission denied")
    assert classify(refused) is Failure.FATAL
    assert classify(GatewayError(14, "connection closed by etcd")) is Failure.UNKNOWN


@pytest.mark.parametrize(
    "pieces",
    [
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"],
        [b"garbage that is not HTTP\r\n\r\n"],
        [b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"res', b"<close>"],
        [b"<close>"],
        chunked(b"[1, 2]\n"),
        chunked(b'{"result": {"TTL": "soon"}}\n'),
    ],
    ids=["not-json", "not-http", "cut-mid-answer", "closed-at-once", "not-an-object", "bad-ttl"],
)
async def test_a_bad_answer_raises_and_the_next_renewal_reconnects(
    gateway: Make, pieces: list[bytes]
) -> None:
    def answer(n: int, body: bytes) -> list[bytes]:
        return pieces if n == 1 else chunked(result("1", 9))

    renewer, gw = await gateway(answer)
    with pytest.raises(GatewayError) as caught:
        await renewer.renew(1)
    assert classify(caught.value) is Failure.UNKNOWN  # a failure, not a refusal: retried
    assert await renewer.renew(1) == 9
    assert gw.connections == 2


async def test_a_server_that_closes_after_each_answer(gateway: Make) -> None:
    renewer, gw = await gateway(lambda n, body: [*chunked(result("1", 4), close=True), b"<close>"])
    assert [await renewer.renew(1) for _ in range(3)] == [4, 4, 4]
    assert gw.connections == 3


async def test_a_timed_out_renewal_drops_its_connection(gateway: Make) -> None:
    """The late answer of a renewal that timed out must not be taken for the next one's."""

    def answer(n: int, body: bytes) -> list[bytes]:
        late = [b"<pause>"] * 6 if n == 1 else []
        return [*late, *chunked(result("1", n))]

    renewer, gw = await gateway(answer)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await renewer.renew(1)
    assert await renewer.renew(1) == 2  # the second request's own answer, on a new connection
    assert gw.connections == 2


async def test_refused_connection_is_an_oserror() -> None:
    renewer = LeaseRenewer("127.0.0.1", 1)
    with pytest.raises(OSError):
        await renewer.renew(1)
    assert classify(OSError(111, "Connection refused")) is Failure.NOT_SENT


def test_a_gone_lease_refused_by_the_gateway_is_lease_not_found() -> None:
    """etcd may also refuse with an error line (NOT_FOUND) instead of leaving TTL out: a
    refusal, not retried, and the caller sees LeaseNotFound."""
    from corral.store.errors import LeaseNotFound
    from corral.store.etcd import _refused

    gone = GatewayError(5, "etcdserver: requested lease not found")
    assert classify(gone) is Failure.FATAL
    assert isinstance(_refused("keepalive", "127.0.0.1:2379", gone), LeaseNotFound)
