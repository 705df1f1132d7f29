"""The ``threads`` option, the message while Numba compiles (and the silence of a warm start), and the digits cache
that spares a run scikit-learn's import."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from snnlab.config import ExperimentConfig, experiment_schema
from snnlab.datasets.digits import _arrays, _cache_file, digits
from snnlab.errors import ConfigError
from snnlab.kernels.threads import available_cores, default_threads, set_threads

ROOT = Path(__file__).resolve().parents[1]

LIF_FORWARD_BACKWARD = """
import torch
from snnlab.neurons import LIF
neuron = LIF(tau=2.0, surrogate={"name": "atan", "alpha": 2.0}, backend="numba")
spikes, _ = neuron(torch.randn(4, 2, 16, requires_grad=True))
spikes.sum().backward()
"""


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter importing snnlab from this tree, with ``env`` added."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=600)


def test_threads_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """null: $OMP_NUM_THREADS when set, else half the cores (at least 1); a number is taken as it is."""
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert default_threads() == max(1, available_cores() // 2)
        assert set_threads(None) == torch.get_num_threads() == default_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert default_threads() == 3
        assert set_threads(2) == torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_threads_is_a_top_level_key(quick_raw: dict) -> None:
    """``threads`` defaults to null, takes a positive integer, and refuses 0."""
    schema = experiment_schema()
    assert schema.model_validate(quick_raw).threads is None
    assert schema.model_validate({**quick_raw, "threads": 2}).threads == 2
    with pytest.raises(ValueError):
        ExperimentConfig.model_validate({"threads": 0})


def test_run_applies_threads(quick_raw: dict, tmp_path: Path) -> None:
    """A run computes on the threads its config names (Numba follows torch's count at each call)."""
    config = tmp_path / "threads.yaml"
    config.write_text(yaml.safe_dump({**quick_raw, "threads": 1, "train": {**quick_raw["train"], "epochs": 1}}))
    code = (
        "import torch; from snnlab.config import load_experiment; from snnlab.runner import run\n"
        f"cfg, source = load_experiment({str(config)!r}, [])\n"
        "run(cfg, source, progress=False); print(torch.get_num_threads())"
    )
    result = _python(code, OMP_NUM_THREADS="2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == "1"


def test_first_compile_is_announced_and_a_warm_start_is_silent(tmp_path: Path) -> None:
    """With an empty Numba cache the kernels compile, and stderr says so with the duration; the second run loads
    them from the cache and says nothing."""
    cold = _python(LIF_FORWARD_BACKWARD, NUMBA_CACHE_DIR=str(tmp_path))
    assert cold.returncode == 0, cold.stderr[-3000:]
    assert "snnlab: compiling the Numba kernel LIF forward" in cold.stderr
    assert re.search(r"snnlab: compiled LIF forward( \(serial\))? in \d+\.\d s", cold.stderr)
    assert re.search(r"snnlab: compiled LIF backward \(atan surrogate(, serial)?\) in \d+\.\d s", cold.stderr)
    warm = _python(LIF_FORWARD_BACKWARD, NUMBA_CACHE_DIR=str(tmp_path))
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert "snnlab:" not in warm.stderr


def test_digits_cache_spares_scikit_learn(tmp_path: Path) -> None:
    """The first build writes the cache; a second process builds the same splits without importing sklearn."""
    code = (
        "import sys, torch; from snnlab.datasets.digits import digits\n"
        "s = digits(test_fraction=0.25, split_seed=0)\n"
        "print('sklearn' in sys.modules, float(s.train.x.sum()), int(s.test.y.sum()), len(s.train.y))"
    )
    first = _python(code, XDG_CACHE_HOME=str(tmp_path))
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "snnlab" / "digits").is_dir()
    second = _python(code, XDG_CACHE_HOME=str(tmp_path))
    assert first.stdout.split()[0] == "True" and second.stdout.split()[0] == "False"
    assert first.stdout.split()[1:] == second.stdout.split()[1:]
    assert not list((tmp_path / "snnlab" / "digits").glob("*.tmp"))


def test_digits_cache_is_the_scikit_learn_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cached or not, the images, labels and stratified split are scikit-learn's own; an unreadable cache file is
    rebuilt."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    bunch = load_digits()
    x = torch.tensor(bunch.images / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(bunch.target, dtype=torch.long)
    train, test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=4, stratify=bunch.target)
    for attempt in ("computed", "cached", "rebuilt"):
        if attempt == "rebuilt":
            _cache_file(0.3, 4).write_bytes(b"not a zip file")
        splits = digits(test_fraction=0.3, split_seed=4, flatten=False)
        assert torch.equal(splits.train.x, x[train]) and torch.equal(splits.train.y, y[train]), attempt
        assert torch.equal(splits.test.x, x[test]) and torch.equal(splits.test.y, y[test]), attempt
    assert _arrays(0.3, 4)[0].dtype == np.uint8


def test_digits_bad_split_still_names_the_key() -> None:
    """The split is checked before the cache or scikit-learn is touched."""
    with pytest.raises(ConfigError, match="data.test_fraction"):
        digits(test_fraction=0.001)
