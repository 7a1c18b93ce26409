"""A live ``llm2vec-gen serve`` in a subprocess on 127.0.0.1, for the server tests and benchmark.

``LiveServer(checkpoint, *options).start()`` runs ``python -m llm2vec_gen.serve`` on a free port
(one torch thread unless ``threads`` says otherwise), waits (bounded) until ``/health`` answers 200
and fails with the server's log if it dies first. ``stop()`` sends SIGTERM and returns the exit
status. ``metric(name, **labels)`` reads one sample from ``/metrics``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port nobody listens on at the moment (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """One server process. ``url`` is its base URL; ``log`` its stdout+stderr file."""

    def __init__(self, checkpoint: str | os.PathLike, *options: str, threads: int = 1, ready_s: float = 300):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [sys.executable, "-m", "llm2vec_gen.serve", str(checkpoint), "--port", str(self.port),
                     *options]  # fmt: skip
        self.threads, self.ready_s = threads, ready_s
        self.log = Path(tempfile.mkstemp(prefix="llm2vec-gen-serve-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def start(self) -> LiveServer:
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), PYTHONWARNINGS="ignore")
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.ready_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"the server was not ready within {self.ready_s}s:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def metric(self, name: str, **labels: str) -> float:
        """The value of sample ``name{labels}`` in /metrics (0.0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            metric, _, label_text = sample.partition("{")
            have = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
            if metric == name and have == want:
                return float(value)
        return 0.0

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM, then the exit status (SIGKILL and a failure after ``timeout`` seconds)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
