"""Where the API listens: an address as the command line gives it, and its listening socket (bound
early, before any process starts, without loading the HTTP server)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

DEFAULT_ADDRESS = "127.0.0.1:8091"


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self}"


def parse_address(text: str) -> Address:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1). Port 0 picks a free one.

    >>> parse_address("0.0.0.0:9000"), parse_address("8091"), parse_address("[::1]:80")
    (Address(host='0.0.0.0', port=9000), Address(host='127.0.0.1', port=8091), Address(host='::1', port=80))
    """
    expected = f"expected HOST:PORT such as {DEFAULT_ADDRESS}, got {text!r}"
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = "", text.strip()
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{expected}: the port must be a number from 0 to 65535")
    if any(c.isspace() or c in "[]/" for c in host):
        raise ValueError(expected)
    return Address(host, int(port))


def listen(address: Address) -> socket.socket:
    """A listening TCP socket. Its protocol must say TCP: asyncio turns Nagle's algorithm off
    (TCP_NODELAY) only on sockets that do, and with Nagle on, a response written in two parts (head,
    then body) waits for the client's delayed ACK: 40 ms added to every request."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock
