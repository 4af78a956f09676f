"""The one path by which blocking work leaves the event loop.

onnxruntime inference, image decoding and hnswlib writes all go through :func:`run_blocking`, so
there is one pool to size and one place where context (request id, device) crosses threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from threadpoolctl import threadpool_limits

P = ParamSpec("P")
T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
# onnxruntime releases the GIL and has its own intra-op threads; a few workers keep decoding and
# inference overlapped without oversubscribing a 2-core machine.
DEFAULT_WORKERS = 4


def configure(workers: int = DEFAULT_WORKERS) -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        limit_native_threads()
        _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blocking")
    return _executor


def limit_native_threads() -> None:
    """One thread per call inside numpy's and OpenCV's BLAS: the pool above is the parallelism.

    OpenBLAS workers spin between calls. Under load, a 4,096 x 512 gallery scan then cost 1.5 ms of
    CPU instead of 0.5 ms, and the spinning thread took 6% of the service's CPU over an airport day."""
    threadpool_limits(1, user_api="blas")


def shutdown() -> None:
    global _executor
    if _executor is not None:
        _executor.shutdown(wait=True, cancel_futures=True)
        _executor = None


async def run_blocking(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn`` in the shared pool, carrying contextvars so logs keep their request fields."""
    ctx = contextvars.copy_context()
    call = functools.partial(ctx.run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(configure(), call)
