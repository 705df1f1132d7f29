"""Kill a training process at its first mid-epoch checkpoint, as a crash would, for the resume tests."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path


def kill_at_first_checkpoint(process: subprocess.Popen, folder: Path, timeout: float = 120) -> None:
    """SIGKILL ``process`` as soon as ``folder/checkpoint.pt`` exists; fails if it ends or times out first."""
    deadline = time.monotonic() + timeout
    while not (folder / "checkpoint.pt").exists():
        assert process.poll() is None, process.stdout.read() if process.stdout else process.returncode
        assert time.monotonic() < deadline, f"no checkpoint in {folder} after {timeout} s"
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (folder / "summary.json").exists()
