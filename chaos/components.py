"""The real components of a chaos run: redis-server and the fault proxy, each in its own
process on 127.0.0.1 and a free port, started and stopped with bounded waits."""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

CHAOS = Path(__file__).resolve().parent
# Results and logs: build/chaos/out unless CHAOS_OUT says (make passes $(BUILD)/chaos/out).
OUT = Path(os.environ.get("CHAOS_OUT") or CHAOS.parent / "build" / "chaos" / "out")
sys.path.insert(0, str(CHAOS))
import faultproxy  # noqa: E402  (the proxy's own control client and mode check)

PYTHON = "/usr/bin/python3"


def free_port():
    """A port free right now on 127.0.0.1 (the caller retries if it is taken meanwhile)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what, step=0.02):
    """Polls pred() until it is true, or raises TimeoutError naming what it waited for."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def stop_process(p, timeout=5.0):
    """SIGTERM, then SIGKILL if it has not exited within timeout; always reaped."""
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
    p.terminate()
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout)


_started = []  # every process started here, to check that each one ended


def spawn(args, **kw):
    """subprocess.Popen, remembered for leftover_processes."""
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, **kw)
    _started.append(p)
    return p


def leftover_processes(marker):
    """Pids of live processes started here, or whose command line mentions marker (a run's
    temp dir: that catches their children; redis-server rewrites its command line)."""
    pids = [p.pid for p in _started if p.poll() is None]
    _started[:] = [p for p in _started if p.returncode is None]
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes()
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z" and int(d.name) not in pids:
            pids.append(int(d.name))
    return pids


class RedisServer:
    """redis-server in workdir on a free port: no persistence unless appendonly (then every
    write is fsync'd, so acknowledged writes survive kill -9), noeviction for OOM tests."""

    def __init__(self, workdir, appendonly=False):
        self.dir = Path(workdir)
        self.appendonly = appendonly
        self.port = None
        self.proc = None
        self.paused = False

    def _spawn(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--daemonize", "no",
                "--logfile", str(self.dir / "redis.log"), "--maxmemory-policy", "noeviction",
                "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always"]
        self.proc = spawn(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()

    def ping(self, timeout=0.5):
        try:
            return self.client(timeout).ping()
        except redis.RedisError:
            return False

    def wait_ready(self, timeout=10.0):
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited with status "
                                   f"{self.proc.returncode}; see {self.dir / 'redis.log'}")
            return self.ping()
        wait_until(ready, timeout, f"redis-server on port {self.port}")

    def start(self):
        for attempt in range(3):  # the free port may be taken before redis binds it
            self.port = free_port()
            try:
                self._spawn()
                return self
            except RuntimeError:
                if attempt == 2:
                    raise

    def client(self, timeout=2.0):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout,
                           socket_connect_timeout=timeout)

    def kill9(self):
        self.proc.kill()
        self.proc.wait(5)

    def restart(self):
        """After kill9: the same port and dir (and append-only file)."""
        self._spawn()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self):
        stop_process(self.proc)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class FaultProxy:
    """chaos/faultproxy.py in front of upstream_port; set() changes its mode."""

    def __init__(self, upstream_port, log_path):
        self.upstream_port = upstream_port
        self.log_path = Path(log_path)
        self.proc = None
        self.port = self.control = None

    def start(self, timeout=10.0):
        errpath = self.log_path.with_suffix(".stderr")
        with open(errpath, "wb") as err:
            self.proc = spawn([PYTHON, str(CHAOS / "faultproxy.py"), "--upstream",
                               f"127.0.0.1:{self.upstream_port}", "--log", str(self.log_path)],
                              stdout=subprocess.PIPE, stderr=err)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"faultproxy did not start within {timeout} s: "
                               f"{errpath.read_text(errors='replace')}")
        ports = json.loads(line)
        self.port, self.control = ports["listen"], ports["control"]
        return self

    def set(self, mode):
        reply = faultproxy.ctl(self.control, mode)
        if not reply.get("ok"):
            raise RuntimeError(f"faultproxy refused {mode}: {reply.get('error')}")

    def stop(self):
        stop_process(self.proc)
        if self.proc:
            self.proc.stdout.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
