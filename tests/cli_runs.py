"""Real CLI subprocesses for the fault-injection tests: run, measure, SIGKILL.

``spawn(argv, log, *measured)`` runs ``llm2vec-gen ARGV`` in a fresh interpreter with one thread,
stdout and stderr going to ``log.out`` / ``log.err``. Each ``"module:function"`` in ``measured``
is wrapped so that, when it starts, the kernel's RSS high-water mark is reset (/proc/self/clear_refs,
5) and the RSS printed; the run prints its final high-water mark, so ``finish`` returns how much
resident memory the measured work added (model loading excluded).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_RUNNER = """
import importlib, sys
from llm2vec_gen.cli import main

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))

def measured(run):
    def wrapper(*args, **kwargs):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        print("WORK_START_KB", status("VmRSS:"), flush=True)
        return run(*args, **kwargs)
    return wrapper

for target in {targets!r}:
    module, name = target.split(":")
    module = importlib.import_module(module)
    setattr(module, name, measured(getattr(module, name)))
rc = main(sys.argv[1:])
print("WORK_PEAK_KB", status("VmHWM:"))
sys.exit(rc)
"""


def spawn(argv: list[str], log: Path, *measured: str) -> subprocess.Popen:
    """Starts the CLI on ``argv``; ``measured``: the "module:function"s whose memory is read."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    runner = _RUNNER.format(targets=list(measured))
    with log.with_suffix(".out").open("w") as out, log.with_suffix(".err").open("w") as err:
        return subprocess.Popen([sys.executable, "-c", runner, *argv], stdout=out, stderr=err, env=env)


def finish(proc: subprocess.Popen, log: Path) -> tuple[str, int]:
    """(stdout, KiB the RSS peak grew over the RSS when the measured work started) of a good run."""
    assert proc.wait(timeout=300) == 0, log.with_suffix(".err").read_text()[-2000:]
    out = log.with_suffix(".out").read_text()

    def kib(key: str) -> int:
        return int(out.split(key)[1].split()[0])

    return out, kib("WORK_PEAK_KB") - kib("WORK_START_KB")


def kill_when(proc: subprocess.Popen, ready) -> None:
    """SIGKILLs ``proc`` as soon as ``ready()`` is true; fails if it ended first."""
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0005)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
