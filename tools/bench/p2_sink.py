"""A minimal, fast SMTP sink for P2 (asyncio, PIPELINING): accepts everything on loopback and
writes its message and connection counts to a status file. Run: p2_sink.py PORT STATUSFILE."""

from __future__ import annotations

import asyncio
import os
import sys


class Counters:
    def __init__(self) -> None:
        self.messages = 0
        self.connections = 0


class SinkProtocol(asyncio.Protocol):
    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.buf = b""
        self.in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.counters.connections += 1
        self.transport.write(b"220 sink ESMTP\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while True:
            if self.in_data:
                end = self.buf.find(b"\r\n.\r\n")
                if end == -1:
                    self.buf = self.buf[-4:] if len(self.buf) > 4 else self.buf
                    break
                self.buf = self.buf[end + 5:]
                self.in_data = False
                self.counters.messages += 1
                out.append(b"250 2.0.0 queued\r\n")
                continue
            nl = self.buf.find(b"\r\n")
            if nl == -1:
                break
            line, self.buf = self.buf[:nl], self.buf[nl + 2:]
            verb = line[:4].upper()
            if verb == b"EHLO":
                out.append(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.buf = b"\r\n" + self.buf  # so a message of zero lines still ends at \r\n.\r\n
                out.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                out.append(b"221 bye\r\n")
                self.transport.write(b"".join(out))  # type: ignore[attr-defined]
                self.transport.close()
                return
            else:
                out.append(b"250 2.0.0 ok\r\n")
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]


async def main(port: int, status: str) -> None:
    counters = Counters()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(counters), "127.0.0.1", port, backlog=512)
    async with server:
        while True:
            tmp = status + ".tmp"
            with open(tmp, "w") as fh:
                fh.write(f"{counters.messages} {counters.connections}\n")
            os.replace(tmp, status)
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
