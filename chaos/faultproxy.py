#!/usr/bin/python3
"""faultproxy - a TCP proxy for Redis whose faults change while it runs.

    faultproxy.py --upstream HOST:PORT [--listen PORT] [--control PORT] [--log FILE]
    faultproxy.py ctl CONTROL_PORT '{"mode": "hang"}'

On start it prints one JSON line, {"listen": PORT, "control": PORT} (port 0 picks a free
one). The control port takes one JSON object per line and answers {"ok": true} or
{"ok": false, "error": "..."}. Modes:

    {"mode": "pass"}                                   forward both ways
    {"mode": "latency", "ms": 100, "jitter-ms": 20}    delay every reply by ms +- jitter
    {"mode": "hang"}                                   accept, read, never answer
    {"mode": "reset"}                                  reset every connection (RST)
    {"mode": "refuse"}                                 stop listening: connection refused
    {"mode": "bandwidth", "bytes-per-s": 2000, "chunk": 64}   slice and throttle
    {"mode": "flap", "period-ms": 250, "phases": [MODE, MODE, ...]}  cycle through modes
    {"cmd": "stats"}                                   counters and the current mode

The log (JSON lines) has every Redis command a client sent ("command"), every connection
reset before it could send one ("conn" with action "reject"), and every mode change, with
the time and the mode then in force, so a harness can count the traffic a breaker let
through while open.
Times are time.monotonic_ns(), the clock of the programs under test. Standard library
only.
"""

import argparse
import asyncio
import json
import random
import signal
import socket
import struct
import sys
import time

MODES = {
    # mode: {parameter: (default, minimum)}
    "pass": {},
    "latency": {"ms": (None, 0), "jitter-ms": (0, 0)},
    "hang": {},
    "reset": {},
    "refuse": {},
    "bandwidth": {"bytes-per-s": (None, 1), "chunk": (64, 1)},
    "flap": {"period-ms": (None, 1), "phases": (None, None)},
}


def validate_mode(m, where="mode"):
    """Checks a mode object; returns it with defaults filled in. Raises ValueError naming
    the offending key (where.key), so scenario files and the control port share one check."""
    if not isinstance(m, dict):
        raise ValueError(f"{where}: want a table/object, got {m!r}")
    name = m.get("mode")
    if name not in MODES:
        raise ValueError(f"{where}.mode: unknown mode {name!r} (known: {', '.join(MODES)})")
    out = {"mode": name}
    for key in m:
        if key != "mode" and key not in MODES[name]:
            raise ValueError(f"{where}.{key}: not a parameter of mode {name!r}")
    for key, (default, minimum) in MODES[name].items():
        val = m.get(key, default)
        if val is None:
            raise ValueError(f"{where}.{key}: required for mode {name!r}")
        if key == "phases":
            if not isinstance(val, list) or len(val) < 2:
                raise ValueError(f"{where}.phases: want a list of at least 2 modes")
            val = [validate_mode(p, f"{where}.phases[{i}]") for i, p in enumerate(val)]
            if any(p["mode"] == "flap" for p in val):
                raise ValueError(f"{where}.phases: a phase cannot flap itself")
        elif isinstance(val, bool) or not isinstance(val, (int, float)) or val < minimum:
            raise ValueError(f"{where}.{key}: want a number >= {minimum}, got {val!r}")
        out[key] = val
    return out


def parse_commands(buf):
    """Complete Redis commands at the start of buf (RESP arrays or inline). Returns
    (command names, bytes consumed); an incomplete command is left for the next read."""
    names, pos = [], 0
    while pos < len(buf):
        if buf[pos] != ord("*"):  # inline command, e.g. from redis-cli or telnet
            end = buf.find(b"\n", pos)
            if end < 0:
                break
            words = bytes(buf[pos:end]).split()
            names.append(words[0].decode("latin-1").upper() if words else "")
            pos = end + 1
            continue
        end = buf.find(b"\r\n", pos)
        if end < 0:
            break
        try:
            argc = int(buf[pos + 1:end])
        except ValueError:
            return names + ["?"], len(buf)  # not RESP: count it once, resynchronise
        p, first = end + 2, None
        for _ in range(argc):
            end = buf.find(b"\r\n", p)
            if end < 0 or buf[p] != ord("$"):
                if end >= 0:
                    return names + ["?"], len(buf)
                p = None
                break
            try:
                n = int(buf[p + 1:end])
            except ValueError:
                return names + ["?"], len(buf)
            if len(buf) < end + 2 + n + 2:
                p = None
                break
            if first is None:
                first = bytes(buf[end + 2:end + 2 + n]).decode("latin-1").upper()
            p = end + 2 + n + 2
        if p is None:
            break
        names.append(first or "")
        pos = p
    return names, pos


def abort(writer):
    """Closes a connection with a TCP reset, as a crashed or firewalled peer would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class Proxy:
    def __init__(self, upstream, listen_port, log):
        self.upstream = upstream
        self.port = listen_port
        self.log_file = log
        self.mode = {"mode": "pass"}
        self.mode_since = time.monotonic()
        self.server = None
        self.conns = {}  # id -> Conn
        self.next_id = 0
        self.commands = 0
        self.applied = "pass"  # the effective mode whose side effects are in place

    def log(self, **rec):
        if self.log_file:
            rec = {"t_ns": time.monotonic_ns(), **rec}
            self.log_file.write(json.dumps(rec, separators=(",", ":")) + "\n")
            self.log_file.flush()

    def effective(self):
        """The mode in force now (a flap resolves to its current phase)."""
        m = self.mode
        if m["mode"] != "flap":
            return m
        i = int((time.monotonic() - self.mode_since) * 1000 // m["period-ms"])
        return m["phases"][i % len(m["phases"])]

    async def listen(self):
        self.server = await asyncio.start_server(self.accept, "127.0.0.1", self.port,
                                                 reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def apply(self):
        """Puts the side effects of the effective mode in place: listening or not,
        connections reset, hung connections closed once the hang is over."""
        name = self.effective()["mode"]
        if name == self.applied:
            return
        was, self.applied = self.applied, name
        if name == "refuse" and self.server:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        if name != "refuse" and self.server is None:
            await self.listen()
        for c in list(self.conns.values()):
            if name in ("reset", "refuse") or (was == "hang" and c.poisoned):
                c.close(reset=True)

    async def ticker(self):
        while True:
            try:
                await self.apply()
            except OSError as e:  # e.g. the port was taken while refusing: say so, retry
                self.applied = None
                self.log(event="error", error=str(e))
            await asyncio.sleep(0.005)

    async def set_mode(self, m):
        self.mode, self.mode_since = validate_mode(m), time.monotonic()
        self.log(event="mode", mode=self.mode)
        await self.apply()

    async def accept(self, reader, writer):
        cid, self.next_id = self.next_id, self.next_id + 1
        name = self.effective()["mode"]
        if name in ("reset", "refuse"):  # refuse: accepted just before the listener closed
            self.log(event="conn", conn=cid, action="reject")
            abort(writer)
            return
        conn = Conn(self, cid, reader, writer)
        self.conns[cid] = conn
        self.log(event="conn", conn=cid, action="accept")
        await conn.run()


class Conn:
    def __init__(self, proxy, cid, reader, writer):
        self.proxy, self.id = proxy, cid
        self.reader, self.writer = reader, writer
        self.up_reader = self.up_writer = self.up_task = None
        self.poisoned = False  # bytes were dropped: the stream cannot be resumed
        self.closed = False
        self.buf = bytearray()

    def close(self, reset=False):
        if self.closed:
            return
        self.closed = True
        self.proxy.conns.pop(self.id, None)
        if self.up_task is not None and self.up_task is not asyncio.current_task():
            self.up_task.cancel()
        self.proxy.log(event="conn", conn=self.id, action="reset" if reset else "close")
        for w in (self.writer, self.up_writer):
            if w is None:
                continue
            if reset:
                abort(w)
            else:
                w.close()

    async def send(self, writer, data, mode):
        if mode["mode"] == "bandwidth":
            step = int(mode["chunk"])
            for i in range(0, len(data), step):  # each slice arrives when it is fully "sent"
                await asyncio.sleep(len(data[i:i + step]) / mode["bytes-per-s"])
                writer.write(data[i:i + step])
                await writer.drain()
        else:
            writer.write(data)
            await writer.drain()

    async def run(self):
        try:
            await self.client_to_upstream()
        except (ConnectionError, OSError):
            pass
        finally:
            self.close()

    async def client_to_upstream(self):
        while not self.closed:
            data = await self.reader.read(65536)
            if not data:
                return
            self.buf += data
            names, used = parse_commands(self.buf)
            del self.buf[:used]
            mode = self.proxy.effective()
            for n in names:
                self.proxy.commands += 1
                self.proxy.log(event="command", conn=self.id, cmd=n, mode=mode["mode"])
            if mode["mode"] in ("reset", "refuse"):
                self.close(reset=True)
                return
            if mode["mode"] == "hang" or self.poisoned:
                self.poisoned = True
                continue
            if self.up_writer is None:
                try:
                    self.up_reader, self.up_writer = await asyncio.open_connection(*self.proxy.upstream)
                except OSError:
                    self.close(reset=True)  # the client sees the dependency down
                    return
                self.up_task = asyncio.ensure_future(self.upstream_to_client())  # kept: asyncio holds tasks weakly
            await self.send(self.up_writer, data, mode)

    async def upstream_to_client(self):
        try:
            while not self.closed:
                data = await self.up_reader.read(65536)
                if not data:
                    break
                mode = self.proxy.effective()
                if mode["mode"] == "latency":
                    await asyncio.sleep(max(0.0, mode["ms"] + random.uniform(-1, 1) * mode["jitter-ms"]) / 1000)
                    mode = self.proxy.effective()
                if mode["mode"] == "hang" or self.poisoned:
                    self.poisoned = True
                    continue
                if mode["mode"] in ("reset", "refuse"):
                    break
                await self.send(self.writer, data, mode)
        except (ConnectionError, OSError):
            pass
        self.close(reset=not self.closed and self.proxy.effective()["mode"] in ("reset", "refuse"))


async def control(proxy, reader, writer):
    try:
        while line := await reader.readline():
            try:
                req = json.loads(line)
                if isinstance(req, dict) and req.get("cmd") == "stats":
                    reply = {"ok": True, "commands": proxy.commands, "connections": len(proxy.conns),
                             "mode": proxy.mode, "effective": proxy.effective()["mode"]}
                else:
                    await proxy.set_mode(req)
                    reply = {"ok": True}
            except (ValueError, OSError) as e:  # bad JSON, a bad mode, or it cannot listen
                reply = {"ok": False, "error": str(e)}
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def host_port(s):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"want HOST:PORT, got {s!r}")
    return host or "127.0.0.1", int(port)


def port(s):
    if not s.isdigit() or int(s) > 65535:
        raise argparse.ArgumentTypeError(f"want a port 0..65535, got {s!r}")
    return int(s)


async def serve(args):
    log = open(args.log, "w") if args.log else None
    proxy = Proxy(args.upstream, args.listen, log)
    await proxy.listen()
    ctl = await asyncio.start_server(lambda r, w: control(proxy, r, w), "127.0.0.1", args.control)
    print(json.dumps({"listen": proxy.port, "control": ctl.sockets[0].getsockname()[1]}), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    ticker = asyncio.ensure_future(proxy.ticker())  # noqa: F841 (kept: asyncio holds tasks weakly)
    await stop.wait()
    for c in list(proxy.conns.values()):
        c.close()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:  # pumps of hung connections, the ticker: end them before the loop closes
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if log:
        log.close()


def ctl(port_, request, timeout=5.0):
    """Sends one control request; returns the reply as a dict."""
    with socket.create_connection(("127.0.0.1", port_), timeout=timeout) as s:
        s.sendall((json.dumps(request) + "\n").encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("faultproxy closed the control connection")
            reply += chunk
    return json.loads(reply)


def main(argv):
    if argv[:1] == ["ctl"]:
        if len(argv) != 3 or not argv[1].isdigit():
            sys.exit("usage: faultproxy.py ctl CONTROL_PORT JSON")
        try:
            reply = ctl(int(argv[1]), json.loads(argv[2]))
        except (ValueError, OSError) as e:
            sys.exit(f"faultproxy.py ctl: {e}")
        print(json.dumps(reply))
        sys.exit(0 if reply.get("ok") else 1)
    ap = argparse.ArgumentParser(description="TCP fault proxy for Redis (see the module doc).")
    ap.add_argument("--upstream", type=host_port, required=True, help="HOST:PORT of the real server")
    ap.add_argument("--listen", type=port, default=0, help="port for clients (0: a free one)")
    ap.add_argument("--control", type=port, default=0, help="control port (0: a free one)")
    ap.add_argument("--log", help="JSON-lines log of commands and mode changes")
    args = ap.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except OSError as e:
        sys.exit(f"faultproxy.py: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])
