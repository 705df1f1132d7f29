"""Hostile and careless input (issue 11, items 4, 7, 11, 12): each case that once gave a traceback, a hang or a
silent acceptance now gives one message naming the file, the key and what was expected."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from snnlab.cli import app
from snnlab.config import load_experiment, validate
from snnlab.errors import ConfigError, DataFileError
from snnlab.neurons import IF, LI, LIF

runner = CliRunner()


def check_fails(path: Path, *args: str) -> str:
    """`snnlab check` exits 2 with a message (no traceback) naming ``path``; returns the message."""
    result = runner.invoke(app, ["check", str(path), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert str(path) in result.output
    return result.output


def write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# --- item 7: non-finite numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key", "got"),
    [
        ("train.optimizer.lr=.inf", "train.optimizer.lr", "inf"),
        ("train.optimizer.lr=1e999", "train.optimizer.lr", "'1e999'"),
        ("train.optimizer.weight_decay=.inf", "train.optimizer.weight_decay", "inf"),
        ("train.optimizer.groups=[{params: 'x', lr: .nan}]", "train.optimizer.groups[0].lr", "nan"),
        ("network.neuron.threshold=.nan", "network.neuron.threshold", "nan"),
        ("network.neuron.threshold=-.inf", "network.neuron.threshold", "-inf"),
        ("network.neuron.v_reset=.nan", "network.neuron.v_reset", "nan"),
        ("network.neuron.dt=.inf", "network.neuron.dt", "inf"),
        ("network.neuron.surrogate={name: atan, alpha: .inf}", "network.neuron.surrogate.alpha", "inf"),
        ("rule.grad_clip=.inf", "rule.grad_clip", "inf"),
        ("data.encoder={name: poisson, gain: .inf}", "data.encoder.gain", "inf"),
    ],
)
def test_non_finite_options_are_refused_at_their_key(override: str, key: str, got: str) -> None:
    """Infinite and NaN numbers are refused where they are written, with pydantic's finite-number message."""
    with pytest.raises(ConfigError) as caught:
        load_experiment(None, [override])
    assert f"{key}: Input should be a finite number (got {got})" in str(caught.value)


def test_infinite_tau_is_a_pure_integrator_and_nan_tau_is_refused(quick_raw: dict) -> None:
    """``tau: .inf`` (no leak) is the one documented infinity: accepted for LIF and LI; NaN is not."""
    for neuron in ({"model": "lif", "tau": math.inf}, {"model": "li", "tau": math.inf}):
        quick_raw["network"]["neuron"] = neuron
        assert validate(quick_raw).network.neuron.tau == math.inf
    quick_raw["network"]["neuron"] = {"model": "lif", "tau": math.nan}
    with pytest.raises(ConfigError, match=r"network\.neuron\.tau: Input should be greater than 0 \(got nan\)"):
        validate(quick_raw)


def test_neuron_constructors_refuse_non_finite_numbers() -> None:
    """Python construction is validated like YAML: NaN/inf thresholds and resets are refused, infinite tau is not."""
    for kwargs in ({"threshold": math.nan}, {"threshold": -math.inf}, {"v_reset": math.nan}, {"dt": math.inf}):
        with pytest.raises(ValidationError, match="finite number"):
            LIF(**kwargs)
    assert LI(tau=math.inf).leak.beta == 1.0
    assert LIF(tau=math.inf).leak.beta == 1.0
    assert IF().leak.beta == 1.0


@pytest.mark.parametrize("override", ["network.neuron.dt=1e300", "network.neuron.tau=1e-300"])
def test_decay_that_underflows_names_tau_and_dt(override: str) -> None:
    """A dt/tau so large that beta underflows once gave pydantic's dump about a readout tau of 0 the user never
    wrote; now the neuron's key and the values that caused it."""
    result = runner.invoke(app, ["check", "quickstart", override])
    assert result.exit_code == 2, result.output
    assert "network.neuron: tau=" in result.output and "underflows to 0" in result.output
    assert "validation error" not in result.output


# --- item 4: files and numbers that once gave tracebacks -------------------------------------------------------


def test_binary_config_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "weights.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    assert "not a text file: byte 0 is not UTF-8" in check_fails(path)


def test_deeply_nested_yaml_is_named(tmp_path: Path, quick_raw: dict) -> None:
    """YAML nested beyond Python's recursion limit: in the file and as an override, a message instead of a
    3,000-line RecursionError."""
    path = tmp_path / "deep.yaml"
    path.write_text("data: " + "[" * 1000 + "]" * 1000 + "\n")
    assert "nested too deeply" in check_fails(path)
    path = write(tmp_path, quick_raw)
    message = check_fails(path, "data=" + "{a: " * 1000 + "1" + "}" * 1000)
    assert "(command-line override): data: the value is nested too deeply" in message


@pytest.mark.parametrize("seed", [2**64, 2**63, -(2**63) - 1])
def test_seed_beyond_64_bits_is_refused(quick_raw: dict, seed: int) -> None:
    quick_raw["seed"] = seed
    with pytest.raises(ConfigError, match=r"seed: Input should be"):
        validate(quick_raw)
    quick_raw["seed"] = 2**63 - 1
    assert validate(quick_raw).seed == 2**63 - 1


# --- item 4 (data parts): sizes and splits that once failed deep inside torch or scikit-learn -------------------


def build_data(**data: Any) -> Any:
    """The dataset ``data`` describes, built as a run builds it."""
    from snnlab.datasets import DATASETS

    return DATASETS.build(validate({"data": data, "network": {"blocks": [{"linear": 2}]}}).data)


@pytest.mark.parametrize("fraction", [0.001, 0.999])
def test_digits_split_that_cannot_be_stratified_names_the_key_and_range(fraction: float) -> None:
    with pytest.raises(ConfigError) as caught:
        build_data(name="digits", test_fraction=fraction)
    message = str(caught.value)
    assert message.startswith(f"data.test_fraction: {fraction} holds out")
    assert "use a value from 0.0056 to 0.9944" in message
    for edge in (0.0056, 0.9944):  # the range it gives works
        assert len(build_data(name="digits", test_fraction=edge).test) > 0


def test_absurd_time_steps_are_refused_before_allocating() -> None:
    """``time_steps: 1e8`` once ended in the allocator; now the key, the size and the most that fits."""
    with pytest.raises(ConfigError, match=r"data\.time_steps: 100000000 steps of \[64\] make one sample 23.8 GiB"):
        build_data(name="digits", time_steps=100_000_000)
    assert build_data(name="digits", time_steps=1000).train[0][0].shape == (1000, 64)


# --- items 4, 11, 12: event files that were misread, accepted or hung the run -----------------------------------

tonic = pytest.importorskip("tonic")


def nmnist_root(tmp_path: Path, recording: bytes = b"") -> Path:
    """An N-MNIST layout with one training recording of class 1 (``recording``, else the real sample) and one test
    recording."""
    from event_files import samples_dir

    real = samples_dir()
    if real is None and not recording:
        pytest.skip("the sample recordings (shared/data/events) are not here")
    for split in ("Train", "Test"):
        folder = tmp_path / "NMNIST" / split / "1"
        folder.mkdir(parents=True)
        (folder / "00001.bin").write_bytes(recording or (real / "sample_nmnist.bin").read_bytes())
    return tmp_path


def test_frame_time_steps_are_bounded_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.frames\.time_steps: 100000000 steps of \[2, 34, 34\]"):
        build_data(name="nmnist", root=str(tmp_path), frames={"time_steps": 100_000_000})


def test_empty_nmnist_file_is_named(tmp_path: Path) -> None:
    """A 0-byte recording is a whole number (0) of 5-byte events; it was served as empty frames."""
    root = nmnist_root(tmp_path)
    empty = root / "NMNIST" / "Train" / "1" / "00002.bin"
    empty.write_bytes(b"")
    train = build_data(name="nmnist", root=str(root), cache=False).train
    with pytest.raises(DataFileError, match=rf"{re.escape(str(empty))}: cannot read .*the file is empty \(0 bytes\)"):
        train[1]


def test_class_folder_not_named_by_a_digit_is_named(tmp_path: Path) -> None:
    """A class folder ``seven`` named only the dataset folder and said to fetch it again."""
    root = nmnist_root(tmp_path)
    seven = root / "NMNIST" / "Train" / "seven"
    seven.mkdir()
    with pytest.raises(DataFileError) as caught:
        len(build_data(name="nmnist", root=str(root)).train)
    message = str(caught.value)
    assert message.startswith(f"{seven}: N-MNIST's Train folder holds one folder per class, named by its digit")
    assert "found 'seven'" in message and "fetch" not in message


def test_fifo_among_recordings_is_refused_without_opening_it(tmp_path: Path) -> None:
    """A named pipe would block the reader (and the run) forever; it is refused when the samples are listed. An
    alarm turns a regression into a failure rather than a hung test session."""
    import signal

    root = nmnist_root(tmp_path)
    fifo = root / "NMNIST" / "Train" / "1" / "00002.bin"
    os.mkfifo(fifo)
    h5 = tmp_path / "SHD" / "shd_train.h5"
    h5.parent.mkdir()
    os.mkfifo(h5)
    (tmp_path / "SHD" / "shd_test.h5").write_bytes(b"")

    def hung(*_: Any) -> None:
        raise AssertionError("a FIFO was opened")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        with pytest.raises(
            DataFileError, match=rf"{re.escape(str(fifo))}: is a named pipe \(FIFO\); expected a regular N-MNIST file"
        ):
            len(build_data(name="nmnist", root=str(root)).train)
        with pytest.raises(DataFileError, match=rf"{re.escape(str(h5))}: is a named pipe \(FIFO\)"):
            len(build_data(name="shd", root=str(tmp_path)).train)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_event_splits_give_loader_workers_a_timeout(tmp_path: Path) -> None:
    from snnlab.datasets.base import LOADER_TIMEOUT_S

    splits = build_data(name="nmnist", root=str(tmp_path))
    assert splits.loader_workers > 0 and splits.loader_timeout_s == LOADER_TIMEOUT_S > 0


def shd_root(tmp_path: Path, rows: list[tuple[list[float], int]]) -> Path:
    """An SHD layout whose training file holds ``rows`` of (spike times in s, label), one spike per unit."""
    from event_files import write_heidelberg

    samples = [(np.asarray(t), np.arange(len(t)), label) for t, label in rows]
    write_heidelberg(tmp_path / "SHD" / "shd_train.h5", samples, 20)
    write_heidelberg(tmp_path / "SHD" / "shd_test.h5", [(np.array([0.1]), np.array([3]), 0)], 20)
    return tmp_path


@pytest.mark.parametrize("bad", [math.nan, math.inf, -0.5])
def test_shd_spike_times_must_be_finite_and_non_negative(tmp_path: Path, bad: float) -> None:
    """Once a numpy warning only, then frames from garbage times."""
    root = shd_root(tmp_path, [([0.1, 0.2], 1), ([0.1, bad, 0.3], 2)])
    train = build_data(name="shd", root=str(root), cache=False).train
    assert train[0][0].sum() > 0
    with pytest.raises(
        DataFileError, match=r"shd_train\.h5: cannot read .*row 1 has spike times \[.*\]; expected finite"
    ):
        train[1]


def test_shd_file_without_any_spike_is_refused(tmp_path: Path) -> None:
    root = shd_root(tmp_path, [([], i % 20) for i in range(40)])
    with pytest.raises(DataFileError, match=r"shd_train\.h5: cannot read .*none of 16 rows probed .* holds a spike"):
        len(build_data(name="shd", root=str(root)).train)
    root = shd_root(tmp_path, [([], 0), ([0.1], 1)])  # one silent recording among others is served as one
    assert len(build_data(name="shd", root=str(root)).train) == 2


def test_label_out_of_range_names_the_file(tmp_path: Path) -> None:
    """A label beyond the classes once reached cross-entropy as an IndexError naming nothing."""
    root = shd_root(tmp_path, [([0.1], 1), ([0.2], 25)])
    with pytest.raises(
        DataFileError, match=r"shd_train\.h5 \(part 1\): label 25 is not a class of SHD: expected 0 to 19"
    ):
        len(build_data(name="shd", root=str(root)).train)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.optimizer={name: sgd, lr: 1e300}", "train.optimizer.lr"),
        ("train.optimizer.weight_decay=1e300", "train.optimizer.weight_decay"),
        ("train.scheduler.min_lr=1e300", "train.scheduler.min_lr"),
    ],
)
def test_step_sizes_beyond_float32_are_refused(override: str, key: str) -> None:
    """SGD with ``lr: 1e300`` failed at its first update (torch cannot cast it to the float32 parameters); a
    finite lr that fits is left to the gradient step's non-finite check."""
    with pytest.raises(
        ConfigError, match=rf"{key}: must be at most 3\.403e\+38, the largest float32 .*\(got .1e300.\)"
    ):
        load_experiment(None, [override])
    assert load_experiment(None, ["train.optimizer={name: sgd, lr: 1e38}"])[0].train.optimizer.lr == 1e38
