"""Train the experiment files named on the command line one after another, in this process; started as the N
workers of a process group (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` in the environment, as
torchrun sets them) the same N processes train each in turn, so that one start-up serves several distributed runs
in a test."""

from __future__ import annotations

import sys
from pathlib import Path

from snnlab import runner
from snnlab.config import read_yaml, validate


def main(paths: list[str]) -> None:
    runner.teardown = lambda ctx: None  # keep the process group for the next experiment; it ends with the process
    for path in paths:
        runner.run(validate(read_yaml(Path(path)), path), path, progress=False)


if __name__ == "__main__":
    main(sys.argv[1:])
