"""Run decoding in a child process, so a decoder that crashes or hangs costs one sample only.

A segfault inside a native decoder (decord, FFmpeg) would otherwise kill the DataLoader
worker and with it the run, and a call stuck in C code cannot be interrupted from Python.
:class:`DecoderProcess` keeps one child Python process per worker, sends it one job at a time
over a pipe, kills it when a job outlasts the timeout, and starts a fresh one when it died.
The child is a plain subprocess (``python -m actionrec.data.isolation``): DataLoader workers
are daemonic and may not start ``multiprocessing`` children. It is also replaced after a number
of jobs: PyAV keeps a kilobyte or two per decoded video (measured with scripts/bench_memory.py),
which over an epoch of a large dataset would otherwise add up in every worker.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import select
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

_HEADER = struct.Struct("!Q")
STARTUP_TIMEOUT = 120.0  # seconds for a child's imports on a loaded machine


class DecoderCrash(RuntimeError):
    """The child process died or timed out while working on a job."""


def _send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise EOFError("the decoder process closed its pipe")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _receive(stream: BinaryIO) -> Any:
    (size,) = _HEADER.unpack(_read_exact(stream, _HEADER.size))
    return pickle.loads(_read_exact(stream, size))


class DecoderProcess:
    """One child process that runs ``fn(*args)`` jobs; see the module docstring.

    Args:
        timeout: seconds a job may take before the child is killed (None: no limit).
        max_jobs: start a fresh child after this many jobs, so that what a decoder leaks stays
            bounded (None: never). A start costs about a second of imports.
    """

    def __init__(self, timeout: float | None = 60.0, max_jobs: int | None = 5000) -> None:
        if max_jobs is not None and max_jobs < 1:
            raise ValueError(f"max_jobs={max_jobs} must be >= 1 or None")
        self.timeout = timeout
        self.max_jobs = max_jobs
        self._proc: subprocess.Popen | None = None
        self._pid = os.getpid()
        self._jobs = 0  # sent to the current child

    def __getstate__(self) -> dict:  # a copy sent to a DataLoader worker starts its own child
        return {"timeout": self.timeout, "max_jobs": self.max_jobs}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def call(self, fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` in the child; its exceptions are re-raised here as they were."""
        if self.max_jobs is not None and self._jobs >= self.max_jobs:
            self.close()
        proc = self._ensure_started()
        self._jobs += 1
        _send(proc.stdin, (fn.__module__, fn.__qualname__, args))
        ready, _, _ = select.select([proc.stdout], [], [], self.timeout)
        if not ready:
            self.close()
            raise DecoderCrash(f"no answer within {self.timeout} s (data.decode_timeout)")
        try:
            ok, value = _receive(proc.stdout)
        except (EOFError, OSError) as err:
            code = proc.wait()
            self._proc = None
            reason = f"signal {-code}" if code < 0 else f"exit code {code}"
            raise DecoderCrash(f"the decoder process died ({reason})") from err
        if ok:
            return value
        raise value

    def _ensure_started(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._jobs = 0
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "actionrec.data.isolation"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            # Wait for its imports before any job's clock starts.
            ready, _, _ = select.select([self._proc.stdout], [], [], STARTUP_TIMEOUT)
            if not ready or _receive(self._proc.stdout) != "ready":
                self.close()
                raise DecoderCrash("the decoder process did not start")
        return self._proc

    def close(self) -> None:
        if self._proc is not None and self._pid == os.getpid():
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at shutdown the child dies with its pipe anyway
            self.close()


def _serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """The child's loop: run jobs until the parent closes the pipe."""
    import actionrec.data.dataset  # noqa: F401  (the usual jobs' module, imported up front)

    _send(stdout, "ready")
    while True:
        try:
            module, qualname, args = _receive(stdin)
        except EOFError:
            return
        target: Any = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
        try:
            reply = (True, target(*args))
        except Exception as err:  # sent back and raised in the parent
            reply = (False, err)
        _send(stdout, reply)


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    _serve(sys.stdin.buffer, sys.stdout.buffer)
