"""Run decoding in a child process, so a decoder that crashes or hangs costs one sample only.

A segfault inside a native decoder (decord, FFmpeg) would otherwise kill the DataLoader
worker and with it the run, and a call stuck in C code cannot be interrupted from Python.
:class:`DecoderProcess` keeps one child Python process per worker, sends it one job at a time
over a pipe, kills it when a job outlasts the timeout, and starts a fresh one when it died.
The child is a plain subprocess (``python -m actionrec.data.isolation``): DataLoader workers
are daemonic and may not start ``multiprocessing`` children. It is also replaced after a number
of jobs: PyAV keeps a kilobyte or two per decoded video (measured with scripts/bench_memory.py),
which over an epoch of a large dataset would otherwise add up in every worker.

Decoded frames come back through memory both processes map (a ``memfd`` the child inherits),
not through the pipe: pickling a clip and pushing it through a 64 KiB pipe cost about 2 ms per
3-frame 340x256 clip, as much as decoding a cheap MPEG-4 clip (docs/benchmarks.md). Where
``os.memfd_create`` is missing, results travel pickled.
"""

from __future__ import annotations

import contextlib
import importlib
import mmap
import os
import pickle
import select
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import torch

_HEADER = struct.Struct("!Q")
STARTUP_TIMEOUT = 120.0  # seconds for a child's imports on a loaded machine
SHARED_FD_ENV = "ACTIONREC_DECODER_SHM_FD"
SHARED_MIN_BYTES = 64 * 1024  # smaller results are cheaper pickled


@dataclass(frozen=True)
class _Shared:
    """A tensor the child wrote into the shared buffer: its dense layout, in memory order."""

    shape: tuple[int, ...]  # of the tensor permuted by ``dims`` (C-contiguous in the buffer)
    dims: tuple[int, ...]  # the permutation from the tensor's dims to memory order
    dtype: str  # numpy's name

    def load(self, buffer: mmap.mmap) -> torch.Tensor:
        count = int(np.prod(self.shape))
        flat = np.frombuffer(buffer, dtype=self.dtype, count=count).copy()  # the buffer is reused
        inverse = tuple(int(i) for i in np.argsort(self.dims))
        return torch.from_numpy(flat.reshape(self.shape)).permute(inverse)


def _share(value: Any, fd: int | None, state: dict) -> Any:
    """``value``, or a :class:`_Shared` after writing a large dense CPU tensor into ``fd``."""
    if fd is None or not isinstance(value, torch.Tensor) or value.device.type != "cpu":
        return value
    if value.nbytes < SHARED_MIN_BYTES or value.requires_grad:
        return value
    dims = tuple(sorted(range(value.dim()), key=lambda d: -value.stride(d)))
    dense = value.permute(dims)
    if not dense.is_contiguous():
        return value  # a view with gaps: pickling copies exactly what it holds
    array = dense.numpy()
    if state.get("size", 0) < array.nbytes:  # grow the file, and the mapping with it
        os.ftruncate(fd, array.nbytes)
        if state.get("map") is not None:
            state["map"].close()
        state["map"] = mmap.mmap(fd, array.nbytes)
        state["size"] = array.nbytes
    np.frombuffer(state["map"], dtype=array.dtype, count=array.size)[:] = array.reshape(-1)
    return _Shared(tuple(dense.shape), dims, array.dtype.name)


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
        self._shared_fd: int | None = None  # the buffer results come back in
        self._shared_map: mmap.mmap | None = None

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
            return value.load(self._mapped()) if isinstance(value, _Shared) else value
        raise value

    def _mapped(self) -> mmap.mmap:
        """The shared buffer, mapped anew when the child has grown it."""
        size = os.fstat(self._shared_fd).st_size
        if self._shared_map is None or len(self._shared_map) != size:
            if self._shared_map is not None:
                self._shared_map.close()
            self._shared_map = mmap.mmap(self._shared_fd, size, prot=mmap.PROT_READ)
        return self._shared_map

    def _ensure_started(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._jobs = 0
            self._open_shared()
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            if self._shared_fd is not None:
                env[SHARED_FD_ENV] = str(self._shared_fd)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "actionrec.data.isolation"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                pass_fds=() if self._shared_fd is None else (self._shared_fd,),
            )
            # Wait for its imports before any job's clock starts.
            ready, _, _ = select.select([self._proc.stdout], [], [], STARTUP_TIMEOUT)
            if not ready or _receive(self._proc.stdout) != "ready":
                self.close()
                raise DecoderCrash("the decoder process did not start")
        return self._proc

    def _open_shared(self) -> None:
        """A fresh, empty buffer for a new child (the child sizes it to what it returns)."""
        self._close_shared()
        if hasattr(os, "memfd_create"):
            self._shared_fd = os.memfd_create("actionrec-decoder", flags=0)  # inheritable

    def _close_shared(self) -> None:
        if self._shared_map is not None:
            self._shared_map.close()
        if self._shared_fd is not None:
            os.close(self._shared_fd)
        self._shared_map, self._shared_fd = None, None

    def close(self) -> None:
        if self._proc is not None and self._pid == os.getpid():
            self._proc.kill()
            self._proc.wait()
            self._close_shared()
        self._proc = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at shutdown the child dies with its pipe anyway
            self.close()


def _serve(stdin: BinaryIO, stdout: BinaryIO, shared_fd: int | None = None) -> None:
    """The child's loop: run jobs until the parent closes the pipe."""
    import actionrec.data.dataset  # noqa: F401  (the usual jobs' module, imported up front)

    shared: dict = {}
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
            reply = (True, _share(target(*args), shared_fd, shared))
        except Exception as err:  # sent back and raised in the parent
            reply = (False, err)
        _send(stdout, reply)


def main() -> None:
    """The child process's entry point."""
    torch.set_num_threads(1)
    fd = os.environ.get(SHARED_FD_ENV)
    _serve(sys.stdin.buffer, sys.stdout.buffer, int(fd) if fd else None)


if __name__ == "__main__":
    # Run the imported module's copy, so that what the child pickles (``_Shared``) names
    # ``actionrec.data.isolation``, not ``__main__``.
    from actionrec.data import isolation

    isolation.main()
