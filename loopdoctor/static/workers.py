"""Worker processes that survive a worker's death.

A file that kills its worker (a crash in native code, the kernel's OOM killer) must cost only that
file's result. When the pool breaks, the files it had not finished are checked again one at a
time in a fresh single-worker pool, so the file that breaks it again is known exactly and
reported, and every other file still gets its result.
"""

from __future__ import annotations

from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")


def run_in_pool(work: Callable[[Task], Result], tasks: list[Task], workers: int,
                crashed: Callable[[Task, str], Result]) -> list[Result]:
    """``work`` over ``tasks`` in ``workers`` processes, results in task order; ``crashed(task,
    why)`` stands in for the result of a task whose worker died."""
    results: dict[int, Result] = {}
    # Largest tasks first, so that no worker is left with a big file at the end.
    order = sorted(range(len(tasks)), key=lambda i: -_size(tasks[i]))
    unfinished = _run_batch(work, tasks, order, workers, results)
    for index in unfinished:  # the pool broke: find the culprit one file at a time
        if _run_batch(work, tasks, [index], 1, results):
            results[index] = crashed(tasks[index], "crashed (its worker process died)")
    return [results[index] for index in range(len(tasks))]


def _run_batch(work, tasks, indices: list[int], workers: int, results: dict) -> list[int]:
    """Run these tasks; the indices left without a result because the pool broke."""
    futures: dict[int, Future] = {}
    try:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for index in indices:
                futures[index] = pool.submit(work, tasks[index])
            for index, future in futures.items():
                try:
                    results[index] = future.result()
                except BrokenProcessPool:
                    break
    except BrokenProcessPool:
        pass
    return [index for index in indices if index not in results]


def _size(task) -> int:
    first = task[0] if isinstance(task, tuple) and task else b""
    return len(first) if isinstance(first, (bytes, str)) else 0
