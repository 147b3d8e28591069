"""``wrk`` (Debian's package) as the HTTP load generator, driven by a generated Lua script.

The script POSTs the webhook body with the bearer token. For new alerts, ``request()`` builds
each body with a fingerprint unique to (wrk thread, request number) and one of 16 containers;
for duplicates the body is fixed. ``done()`` prints one ``WRK_JSON`` line with the counts and
latency percentiles, which :func:`run` parses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.payloads import CONTAINER_MARK, FINGERPRINT_MARK
from bench.procs import BenchError, children_cpu_seconds, cpu_seconds

CONTAINERS: Final = 16

_LUA = r"""
local path = [==[@PATH@]==]
local body = [==[@BODY@]==]
local vary = @VARY@
wrk.method = "POST"
wrk.path = path
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer @TOKEN@"

local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local counter = 0
if vary then
  request = function()
    counter = counter + 1
    local fp = string.format("%02x%02x%012x", @SPACE@, tid, counter)
    local ct = string.format("bench-%02d", counter % @CONTAINERS@)
    local b = string.gsub(string.gsub(body, "@FP@", fp), "@CT@", ct)
    return wrk.format(nil, nil, nil, b)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"status_errors":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50.0), latency:percentile(90.0),
    latency:percentile(99.0), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50: float  # seconds
    p90: float
    p99: float
    max: float
    errors: int  # non-2xx/3xx answers, connect/read/write errors and timeouts
    client_cpu: float  # CPU seconds wrk used
    server_cpu: float  # CPU seconds the server used meanwhile

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get when missing and run as root, else a clear error."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BenchError("wrk is not installed: run `apt-get install -y wrk` as root")
    print("bench: wrk is missing; apt-get install -y wrk", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"apt-get install wrk failed:\n{done.stdout}{done.stderr}")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk is still not on PATH after apt-get install wrk")
    return found


def script(path: Path, *, url_path: str, body: str, token: str, vary: bool, space: int = 0) -> Path:
    """Write the Lua script. With ``vary``, ``body`` holds the fingerprint/container marks and
    each request gets the fingerprint (``space`` < 256, wrk thread, request number)."""
    if vary and (FINGERPRINT_MARK not in body or CONTAINER_MARK not in body):
        raise BenchError("a varying body needs the fingerprint and container marks")
    lua_body = body.replace(FINGERPRINT_MARK, "@FP@").replace(CONTAINER_MARK, "@CT@")
    if "]==]" in lua_body or "]==]" in url_path:
        raise BenchError("the body cannot be quoted in Lua")
    text = (
        _LUA.replace("@PATH@", url_path)
        .replace("@VARY@", "true" if vary else "false")
        .replace("@TOKEN@", token)
        .replace("@CONTAINERS@", str(CONTAINERS))
        .replace("@SPACE@", str(space % 256))
    )
    # The body last: it may itself contain text like "@PATH@".
    path.write_text(text.replace("@BODY@", lua_body))
    return path


def run(
    binary: str,
    url: str,
    lua: Path,
    *,
    connections: int,
    seconds: float,
    threads: int,
    server_pid: int,
) -> WrkResult:
    command = [
        binary,
        f"--threads={min(threads, connections)}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        f"--script={lua}",
        url,
    ]
    server_before = cpu_seconds(server_pid)
    client_before = children_cpu_seconds()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    client_cpu = children_cpu_seconds() - client_before
    server_cpu = cpu_seconds(server_pid) - server_before
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50=data["p50_us"] / 1e6,
        p90=data["p90_us"] / 1e6,
        p99=data["p99_us"] / 1e6,
        max=data["max_us"] / 1e6,
        errors=sum(
            int(data[k])
            for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        client_cpu=client_cpu,
        server_cpu=server_cpu,
    )
