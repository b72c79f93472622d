"""Fixtures of the chaos suite: real components on 127.0.0.1, each in the test's temp dir,
and a check after every test that none of its processes is left behind."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from components import FaultProxy, RedisServer, leftover_processes  # noqa: E402
import scenario  # noqa: E402


@pytest.fixture(autouse=True)
def no_process_left_behind(tmp_path):
    yield
    left = leftover_processes(str(tmp_path))
    assert not left, f"processes left behind: {left}"


@pytest.fixture
def chaos_bin():
    d = scenario.bin_dir()
    for prog in scenario.PROGRAMS:
        if not os.access(d / prog, os.X_OK):
            pytest.fail(f"{d / prog} is not built: run make (or set CHAOS_BIN)")
    return d


@pytest.fixture
def redis_server(tmp_path):
    """redis-server on a free port in a temp dir, no persistence; killed at teardown."""
    d = tmp_path / "redis"
    d.mkdir()
    with RedisServer(d) as r:
        yield r


@pytest.fixture
def fault_proxy(redis_server, tmp_path):
    """chaos/faultproxy.py in front of redis_server, logging to tmp_path/proxy.jsonl."""
    with FaultProxy(redis_server.port, tmp_path / "proxy.jsonl") as p:
        yield p
