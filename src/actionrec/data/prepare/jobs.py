"""Run one function over many files with a progress bar, and write outputs atomically.

The preparation scripts share this: a process pool (or a plain loop for one worker), a Rich
progress bar on terminals and nothing in logs, and failures collected rather than raised, so one
broken video does not stop a day-long extraction.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@dataclass(frozen=True)
class JobResult:
    """What one call of the job function gave: its value, or the error it raised."""

    item: Any
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def default_workers() -> int:
    """Cores this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def run_jobs(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    num_workers: int = 1,
    description: str = "working",
    show_progress: bool | None = None,
) -> list[JobResult]:
    """Call ``fn(item)`` for every item, in ``num_workers`` processes (1: in this process).

    Args:
        fn: A picklable (module-level) function of one argument.
        items: Its arguments.
        num_workers: Processes; 0 or 1 runs in this process.
        description: Label of the progress bar.
        show_progress: Draw a bar; ``None``: only when stderr is a terminal.

    Returns:
        One result per item, in the order of ``items``. Exceptions that ``fn`` raises become
        ``JobResult.error`` (``"ExceptionType: message"``); KeyboardInterrupt still stops the run.
    """
    if num_workers < 0:
        raise ValueError(f"num_workers={num_workers} must be >= 0")
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    results: list[JobResult | None] = [None] * len(items)
    with _progress(show_progress) as progress:
        task = progress.add_task(description, total=len(items))
        for index, result in _results(fn, items, num_workers):
            results[index] = result
            progress.advance(task)
    return [r for r in results if r is not None]


def _results(
    fn: Callable[[Any], Any], items: Sequence[Any], num_workers: int
) -> Iterator[tuple[int, JobResult]]:
    if num_workers <= 1 or len(items) <= 1:
        for index, item in enumerate(items):
            yield index, _call(fn, item)
        return
    # spawn, not fork: a fork taken while torch/OpenMP threads hold locks can deadlock the child.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(num_workers, len(items)), mp_context=context) as pool:
        futures = {pool.submit(_call, fn, item): i for i, item in enumerate(items)}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _call(fn: Callable[[Any], Any], item: Any) -> JobResult:
    try:
        return JobResult(item, fn(item))
    except Exception as error:  # reported per item; the run goes on
        return JobResult(item, error=f"{type(error).__name__}: {error}")


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def temp_path(path: Path) -> Path:
    """A sibling of ``path`` to write first and rename onto it; keeps the suffix for muxers."""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


def write_lines_atomic(path: str | os.PathLike, lines: Iterable[str]) -> Path:
    """Write text lines (newline-terminated) to ``path`` via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with tmp.open("w", encoding="utf-8") as out:
        out.writelines(line if line.endswith("\n") else line + "\n" for line in lines)
    os.replace(tmp, path)
    return path


def report_failures(results: Sequence[JobResult], what: str = "item") -> int:
    """Print each failed job (``item: error``) and a summary to stderr; return the count."""
    failed = [r for r in results if not r.ok]
    for result in failed:
        item = result.item[0] if isinstance(result.item, tuple) else result.item
        print(f"error: {item}: {result.error}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(results)} {what}s failed", file=sys.stderr)
    return len(failed)


def convert_tree(
    work: Callable[[tuple[Path, Path]], Any],
    src: str,
    out: str,
    what: str,
    num_workers: int,
    **pair_kwargs: Any,
) -> tuple[list[Any], int]:
    """Run ``work`` on every (video, output) pair of a tree, as the preparation scripts do.

    Returns the values of the jobs that succeeded and the script's exit code (1 when any
    video failed; each is named). A missing or empty tree exits with a one-line error.
    ``pair_kwargs`` go to :func:`~actionrec.data.prepare.filelists.pair_outputs`.
    """
    from actionrec.data.prepare.filelists import pair_outputs

    try:
        jobs = pair_outputs(src, out, **pair_kwargs)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    if not jobs:
        raise SystemExit(
            f"error: no videos with suffixes {pair_kwargs.get('extensions')} under {src}"
        )
    results = run_jobs(work, jobs, num_workers, what)
    return [r.value for r in results if r.ok], 1 if report_failures(results, "video") else 0
