"""The gateway's client for instances: kept-alive HTTP/1.1 connections, parsed with httptools.

A general-purpose async HTTP client costs about 2 ms per request on this kind of machine, more
than the model's own predict; the gateway only ever POSTs a body to a loopback instance, so it
writes the request itself and lets httptools (the parser uvicorn uses) read the answer —
Content-Length, chunked or close-delimited, as a bring-your-own server may send.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

import httptools

#: Idle connections kept per instance.
MAX_IDLE = 32
TIMEOUT_S = 60.0


class UpstreamError(Exception):
    """The instance could not be reached, or went away before answering."""


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str


@dataclass
class _Reading:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    complete: bool = False
    has_length: bool = False

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.has_length = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> tuple[Answer, bool]:
        reading = _Reading()
        parser = httptools.HttpResponseParser(reading)
        self.writer.write(request)
        while not reading.complete:
            data = await self.reader.read(65536)
            if not data:
                if reading.headers and not reading.has_length:
                    break  # a close-delimited body ends with the connection
                raise UpstreamError("the instance closed the connection before answering")
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise UpstreamError(f"the instance's answer is not valid HTTP: {exc}") from exc
        keep_alive = reading.complete and parser.should_keep_alive()
        content_type = reading.headers.get(b"content-type", b"application/json").decode("latin-1")
        return Answer(parser.get_status_code(), b"".join(reading.chunks), content_type), keep_alive

    def close(self) -> None:
        self.writer.close()


class Upstream:
    def __init__(self) -> None:
        self.idle: dict[tuple[str, int], list[_Connection]] = {}

    async def post(
        self, host: str, port: int, path: str, body: bytes, headers: dict[str, str]
    ) -> Answer:
        key = (host, port)
        pool = self.idle.setdefault(key, [])
        request = _request(host, port, path, body, headers)
        if pool:
            answer = await self._reuse(key, pool.pop(), request)
            if answer is not None:
                return answer
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect to {host}:{port}: {exc}") from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await self._exchange(key, _Connection(reader, writer), request)

    async def _reuse(
        self, key: tuple[str, int], conn: _Connection, request: bytes
    ) -> Answer | None:
        """The answer over an idle connection; None when the instance had closed it meanwhile
        (the caller then opens a fresh one — predictions are safe to send twice)."""
        try:
            return await self._exchange(key, conn, request)
        except UpstreamError:
            return None

    async def _exchange(self, key: tuple[str, int], conn: _Connection, request: bytes) -> Answer:
        try:
            async with asyncio.timeout(TIMEOUT_S):  # no extra task per request, unlike wait_for
                answer, keep_alive = await conn.exchange(request)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            conn.close()
            raise UpstreamError(f"the instance at {key[0]}:{key[1]} failed: {exc!r}") from exc
        except UpstreamError:
            conn.close()
            raise
        pool = self.idle.setdefault(key, [])
        if keep_alive and len(pool) < MAX_IDLE:
            pool.append(conn)
        else:
            conn.close()
        return answer

    def close(self) -> None:
        for pool in self.idle.values():
            for conn in pool:
                conn.close()
        self.idle.clear()


def _request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
