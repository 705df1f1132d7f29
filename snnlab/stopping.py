"""How a run stops on a signal: SIGTERM like Ctrl-C, and never in the middle of a step that must stay whole.

``signals_as_interrupts`` makes SIGTERM (what batch schedulers send) raise ``Terminated``, a KeyboardInterrupt,
so that one path stops the run for both. ``interrupts_deferred`` holds either signal back while a checkpoint is
written and recorded, and delivers it right after, so the message about the last checkpoint is always true.
Both act in the main thread only (where Python runs signal handlers) and put the previous handlers back.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import Terminated

_STOPPING = (signal.SIGINT, signal.SIGTERM)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` inside the block; the previous SIGTERM and SIGINT handlers come back after it."""
    if not _main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = {s: signal.getsignal(s) for s in _STOPPING}
    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Run the block whole: a SIGINT or SIGTERM that arrives meanwhile is delivered when it ends."""
    if not _main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.getsignal(s) for s in _STOPPING}
    for s in _STOPPING:
        signal.signal(s, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            signal.raise_signal(received[0])
