#!/usr/bin/env python3
"""A fault-injecting HTTP/1.1 proxy for S3 tests, on 127.0.0.1.

It sits between a client and the S3 server (radosgw), reads each request
head the client sends, and either forwards the request or injects a fault:

  fail_first   answer the first N requests (of any kind) with 503 SlowDown
               and close the connection
  resets       for the next N requests whose body is longer than
               reset_after bytes: forward the head and reset_after bytes of
               the body, then reset both connections (RST, not FIN)
  get_resets   for the next N GETs: forward the request, copy reset_after
               bytes of the answer back, then reset both connections (an
               answer cut short mid-body)
  stalls       for the next N requests: read the head, then never answer
               (the client's low-speed timeout must give up and retry)
  stall_method while set (to "PUT", say), every request with that method
               stalls, whatever the counts
  rules        a list of Rule(method, contains, action, seconds, count):
               requests whose method is `method` (None: any) and whose
               target (path and query) contains `contains` either
               "stall" (as above), get "503" (as fail_first does), or are
               forwarded at once with their answer held back `seconds`
               ("delay": a server that works that long without sending a
               byte), for the first `count` matches (None: all). Rules are looked at first, in order;
               p.set_rules([...]) replaces them while it runs.

Answers are copied back byte for byte; bodies are never changed (a
corrupted body would be refused by the server's digest checks, which is
a different test). Counters tell what was injected.

As a module (runs its event loop in a thread):

    with FaultProxy(("127.0.0.1", 7480), fail_first=3, resets=2) as p:
        url = p.url            # http://127.0.0.1:PORT
        ...
        p.stats()              # {"requests": .., "injected_503": .., ...}

As a command: faultproxy.py UPSTREAM_PORT [--fail-first N] [--resets N]
[--reset-after BYTES] [--stalls N]; prints the URL, serves until ^C.
"""

import argparse
import asyncio
import json
import signal
import socket
import struct
import threading
import time

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate "
            b"(injected by faultproxy).</Message><RequestId>faultproxy</RequestId></Error>")


def _rst(writer):
    """Close with RST: linger 0, then abort without flushing."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class Rule:
    def __init__(self, method, contains, action, seconds=0.0, count=None):
        assert action in ("stall", "delay", "503")
        self.method, self.contains, self.action = method, contains, action
        self.seconds, self.count = seconds, count
        self.matched = 0

    def matches(self, method, target):
        return ((self.method is None or method == self.method) and self.contains in target
                and (self.count is None or self.matched < self.count))

    def __repr__(self):
        return f"Rule({self.method}, {self.contains!r}, {self.action}, {self.seconds}, matched {self.matched})"


class FaultProxy:
    def __init__(self, upstream, fail_first=0, resets=0, reset_after=64 * 1024, stalls=0,
                 get_resets=0,
                 stall_method=None, rules=()):
        self.upstream = upstream
        self.fail_first = fail_first
        self.resets = resets
        self.get_resets = get_resets
        self.reset_after = reset_after
        self.stalls = stalls
        self.stall_method = stall_method
        self.rules = list(rules)
        self.port = None
        self._lock = threading.Lock()
        self._counts = {"connections": 0, "requests": 0, "forwarded": 0,
                        "injected_503": 0, "injected_resets": 0, "injected_get_resets": 0, "injected_stalls": 0,
                        "injected_delays": 0}
        self.seen = []  # (method, target) of every request, in order
        self._loop = None
        self._thread = None
        self._server = None
        self._ready = threading.Event()
        self._tasks = set()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stats(self):
        with self._lock:
            return dict(self._counts)

    def _count(self, name):
        with self._lock:
            self._counts[name] += 1
            return self._counts[name]

    def set_rules(self, rules):
        with self._lock:
            self.rules = list(rules)

    def requests(self, method=None, contains=""):
        """How many requests matching method and contains were seen."""
        with self._lock:
            return sum(1 for m, t in self.seen if (method is None or m == method) and contains in t)

    def _decide(self, method, target, body_len):
        """The fault for the next request: None, '503', 'reset', 'stall' or
        ('delay', seconds)."""
        with self._lock:
            self._counts["requests"] += 1
            self.seen.append((method, target))
            n = self._counts["requests"]
            for r in self.rules:
                if r.matches(method, target):
                    r.matched += 1
                    if r.action == "stall":
                        self._counts["injected_stalls"] += 1
                        return "stall"
                    if r.action == "503":
                        self._counts["injected_503"] += 1
                        return "503"
                    self._counts["injected_delays"] += 1
                    return ("delay", r.seconds)
            if self.stall_method and method == self.stall_method:
                self._counts["injected_stalls"] += 1
                return "stall"
            if n <= self.fail_first:
                self._counts["injected_503"] += 1
                return "503"
            if self._counts["injected_stalls"] < self.stalls:
                self._counts["injected_stalls"] += 1
                return "stall"
            if self._counts["injected_get_resets"] < self.get_resets and method == "GET":
                self._counts["injected_get_resets"] += 1
                return "get-reset"
            if self._counts["injected_resets"] < self.resets and body_len > self.reset_after:
                self._counts["injected_resets"] += 1
                return "reset"
            self._counts["forwarded"] += 1
            return None

    async def _pump(self, reader, writer, hold):
        try:
            while True:
                data = await reader.read(256 * 1024)
                if not data:
                    break
                # A delayed answer: nothing of it reaches the client before hold[0].
                while time.monotonic() < hold[0]:
                    await asyncio.sleep(min(0.05, hold[0] - time.monotonic()))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _client(self, creader, cwriter):
        self._count("connections")
        ureader = uwriter = pump = None
        hold = [0.0]
        try:
            while True:
                try:
                    head = await creader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body_len = int(headers.get("content-length", "0") or 0)
                expect = headers.get("expect", "").lower() == "100-continue"
                parts = lines[0].split(" ")
                fault = self._decide(parts[0], parts[1] if len(parts) > 1 else "", body_len)
                if isinstance(fault, tuple):
                    hold[0] = time.monotonic() + fault[1]
                    fault = None
                if fault == "503":
                    if body_len and not expect:
                        await creader.readexactly(body_len)
                    cwriter.write(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                                  b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(SLOWDOWN)
                                  + SLOWDOWN)
                    await cwriter.drain()
                    return
                if fault == "stall":
                    # Hold the connection open and silent until the client gives up.
                    while await creader.read(65536):
                        pass
                    return
                if fault == "get-reset":
                    await self._cut_answer(head, cwriter)
                    return
                if uwriter is None:
                    ureader, uwriter = await asyncio.open_connection(*self.upstream)
                    pump = asyncio.ensure_future(self._pump(ureader, cwriter, hold))
                uwriter.write(head)
                left = body_len
                sent = 0
                while left:
                    chunk = await creader.read(min(left, 256 * 1024))
                    if not chunk:
                        raise ConnectionError("client closed mid-body")
                    if fault == "reset" and sent + len(chunk) >= self.reset_after:
                        uwriter.write(chunk[: self.reset_after - sent])
                        await uwriter.drain()
                        _rst(uwriter)
                        _rst(cwriter)
                        return
                    uwriter.write(chunk)
                    await uwriter.drain()
                    sent += len(chunk)
                    left -= len(chunk)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if pump is not None:
                pump.cancel()
            for w in (uwriter, cwriter):
                if w is not None and not w.transport.is_closing():
                    w.close()

    async def _cut_answer(self, head, cwriter):
        """Sends a body-less request upstream on a connection of its own and
        copies back reset_after bytes of the answer, then resets."""
        ureader, uwriter = await asyncio.open_connection(*self.upstream)
        try:
            uwriter.write(head)
            await uwriter.drain()
            sent = 0
            while sent < self.reset_after:
                data = await ureader.read(min(256 * 1024, self.reset_after - sent))
                if not data:
                    break
                cwriter.write(data)
                await cwriter.drain()
                sent += len(data)
            _rst(cwriter)
        finally:
            _rst(uwriter)

    async def _serve(self):
        def spawn(r, w):
            t = asyncio.ensure_future(self._client(r, w))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

        self._server = await asyncio.start_server(spawn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        async with self._server:
            await self._server.serve_forever()

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except asyncio.CancelledError:
            pass
        finally:
            for t in list(self._tasks):
                t.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def start(self):
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("faultproxy did not start")
        return self

    def stop(self):
        if self._loop is not None and self._server is not None:
            def shut():
                self._server.close()
                for t in list(self._tasks):
                    t.cancel()
                for t in asyncio.all_tasks(self._loop):
                    t.cancel()
            self._loop.call_soon_threadsafe(shut)
            self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("upstream_port", type=int)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--resets", type=int, default=0)
    ap.add_argument("--reset-after", type=int, default=64 * 1024)
    ap.add_argument("--stalls", type=int, default=0)
    a = ap.parse_args()
    p = FaultProxy(("127.0.0.1", a.upstream_port), a.fail_first, a.resets, a.reset_after, a.stalls)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    p.start()
    print(p.url, flush=True)
    while not stop.wait(1.0):
        pass
    print(json.dumps(p.stats()), flush=True)
    p.stop()


if __name__ == "__main__":
    main()
