"""Event datasets: real sample recordings decode to the numbers in FORMATS.md, synthetic files in each dataset's
exact layout go through the loader a user hits, the frame cache never serves stale frames, missing data gives
the offline error, and a damaged file is named (also from a DataLoader worker), never a hang."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from event_files import (
    aedat31_packet,
    cifar10dvs_address,
    nmnist_records,
    polarity_word,
    samples_dir,
    write_aedat2,
    write_gesture_trial,
    write_heidelberg,
)

from snnlab.config import validate
from snnlab.datasets import DATASETS
from snnlab.errors import ConfigError, DataFileError, MissingDataError

pytest.importorskip("tonic")
SAMPLES = samples_dir()
needs_samples = pytest.mark.skipif(SAMPLES is None, reason="the sample recordings (shared/data/events) are not here")
REPO = Path(__file__).resolve().parents[1]


def build(**data):
    cfg = validate({"data": data, "network": {"blocks": [{"linear": 2}]}}).data
    return DATASETS.build(cfg)


@pytest.fixture
def nmnist_root(tmp_path: Path) -> Path:
    """The real N-MNIST sample as one training recording of class 1 and one test recording of class 3."""
    if SAMPLES is None:
        pytest.skip("the sample recordings (shared/data/events) are not here")
    for split, digit in (("Train", 1), ("Test", 3)):
        folder = tmp_path / "NMNIST" / split / str(digit)
        folder.mkdir(parents=True)
        shutil.copy(SAMPLES / "sample_nmnist.bin", folder / "00001.bin")
    return tmp_path


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to download fails the test."""
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError("a dataset tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)


# --- real sample recordings ------------------------------------------------------------------------


def test_nmnist_sample_counts_and_polarities(nmnist_root: Path) -> None:
    """4,325 events, 2,180 OFF (channel 0) and 2,145 ON (channel 1); the first saccade holds 1,369."""
    splits = build(name="nmnist", root=str(nmnist_root), frames={"time_steps": 32, "bin_ms": 10})
    assert splits.input_shape == (2, 34, 34) and splits.num_classes == 10
    assert len(splits.train) == len(splits.test) == 1
    x, y = splits.train[0]
    assert x.shape == (32, 2, 34, 34) and x.dtype == torch.float32 and y == 1 and splits.test[0][1] == 3
    assert x.sum() == 4325 and x[:, 0].sum() == 2180 and x[:, 1].sum() == 2145
    # 10 ms bins over t = 654 .. 311,175 µs: the last event falls in bin 31
    assert x[31].sum() > 0 and x[:31].sum() < 4325
    first = build(
        name="nmnist", root=str(nmnist_root), first_saccade_only=True, frames={"time_steps": 10, "bin_ms": 10}
    )
    assert first.train[0][0].sum() == 1369
    equal = build(name="nmnist", root=str(nmnist_root), frames={"time_steps": 5, "binary": True})
    x = equal.train[0][0]
    assert x.shape == (5, 2, 34, 34) and set(x.unique().tolist()) <= {0.0, 1.0}


def test_frame_options_shapes(nmnist_root: Path) -> None:
    """Downsampling, merged polarities and a centre crop give the shape the network is built for."""
    splits = build(
        name="nmnist",
        root=str(nmnist_root),
        frames={"time_steps": 4, "downsample": 2, "polarity": False, "crop": [15, 12], "denoise_ms": 5},
    )
    assert splits.input_shape == (1, 12, 15)
    x = splits.train[0][0]
    assert x.shape == (4, 1, 12, 15) and 0 < x.sum() < 4325


@needs_samples
def test_ncars_sample_decodes_as_expelliarmus(tmp_path: Path) -> None:
    """The DAT reader agrees with expelliarmus on the real sample: 2,009 events, 1,350 ON, x 0..77, y 0..41."""
    from expelliarmus import Wizard

    from snnlab.datasets.ncars import read_dat

    path = str(SAMPLES / "sample_ncars.dat")
    ours, reference = read_dat(path), Wizard(encoding="dat").read(path)
    assert len(ours) == 2009 and int(ours["p"].sum()) == 1350
    for field in "txyp":
        np.testing.assert_array_equal(ours[field].astype(np.int64), reference[field].astype(np.int64))
    assert ours["x"].max() == 77 and ours["y"].max() == 41 and ours["t"].max() == 99_952
    for split in ("train", "test"):
        (tmp_path / "NCARS" / f"n-cars_{split}" / "background").mkdir(parents=True)
        (tmp_path / "NCARS" / f"n-cars_{split}" / "cars").mkdir(parents=True)
        shutil.copy(path, tmp_path / "NCARS" / f"n-cars_{split}" / "cars" / "obj_000001_td.dat")
    splits = build(name="ncars", root=str(tmp_path), frames={"time_steps": 10, "bin_ms": 10})
    x, y = splits.train[0]
    assert splits.input_shape == (2, 100, 120) and x.shape == (10, 2, 100, 120) and y == 1 and x.sum() == 2009


@needs_samples
def test_aedat4_sample_decodes() -> None:
    """tonic's AEDAT 4 reader on the DVXplorer sample: 111,954 events, 55,023 ON, times from the first event."""
    pytest.importorskip("aedat")
    from snnlab.datasets.cifar10_dvs import read_aedat4_events

    events = read_aedat4_events(str(SAMPLES / "sample.aedat4"))
    assert len(events) == 111_954 and int(events["p"].sum()) == 55_023
    assert events["t"][0] == 0 and events["t"][-1] == 589_917 and (np.diff(events["t"]) >= 0).all()
    assert events["x"].max() == 319 and events["y"].max() == 239


# --- synthetic files in each dataset's layout ---------------------------------------------------------


def heidelberg_samples(n: int, classes: int) -> list:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        count = 50 + i
        times = np.sort(rng.uniform(0, 0.9, count)).astype(np.float16)
        samples.append((times, rng.integers(0, 700, count), i % classes))
    return samples


def test_shd_file_layout(tmp_path: Path) -> None:
    """Ragged HDF5 rows become [T, 700] counts: each spike lands at (its 10 ms bin, its unit)."""
    train, test = heidelberg_samples(6, 20), heidelberg_samples(3, 20)
    write_heidelberg(tmp_path / "SHD" / "shd_train.h5", train, 20)
    write_heidelberg(tmp_path / "SHD" / "shd_test.h5", test, 20)
    splits = build(name="shd", root=str(tmp_path), frames={"time_steps": 100, "bin_ms": 10})
    assert splits.input_shape == (700,) and splits.num_classes == 20
    assert len(splits.train) == 6 and len(splits.test) == 3
    x, y = splits.train[4]
    times, units, label = train[4]
    expected = torch.zeros(100, 700)
    bins = (times.astype(np.float64) * 1e6).astype(np.int64) // 10_000
    np.add.at(expected.numpy(), (bins, units.astype(np.int64)), 1)
    assert y == label and torch.equal(x, expected)
    assert build(name="shd", root=str(tmp_path), frames={"downsample": 2}).train[0][0].shape == (16, 350)


def test_ssc_validation_split(tmp_path: Path) -> None:
    for split, n in (("train", 4), ("valid", 2), ("test", 3)):
        write_heidelberg(tmp_path / "SSC" / f"ssc_{split}.h5", heidelberg_samples(n, 35), 35)
    assert len(build(name="ssc", root=str(tmp_path)).test) == 3
    splits = build(name="ssc", root=str(tmp_path), test_split="valid", frames={"time_steps": 8})
    assert len(splits.test) == 2 and splits.num_classes == 35 and splits.test[1][0].shape == (8, 700)


def gesture_root(tmp_path: Path) -> Path:
    """A train trial with two labelled gestures (one needing the timestamp overflow) plus a special-event
    packet that must be skipped, and a test trial with one."""
    base = tmp_path / "DVSGesture" / "DvsGesture"
    first = [(polarity_word(10, 20, 1), 1_000), (polarity_word(11, 20, 0), 2_000), (polarity_word(127, 5, 1), 3_000)]
    special = aedat31_packet(0, [(0xFFFF_FFFF, 2_500)])  # out of the sensor if read as polarity
    later = [(polarity_word(60, 70, 1), 100), (polarity_word(61, 70, 1), 200)]  # t = 2^31 + ...
    write_gesture_trial(
        base,
        "user01_fluorescent",
        [aedat31_packet(1, first), special, aedat31_packet(1, later, ts_overflow=1)],
        [(3, 500, 3_500), (11, 2**31, 2**31 + 1_000)],
    )
    write_gesture_trial(base, "user24_led", [aedat31_packet(1, first)], [(1, 0, 10_000)])
    (base / "trials_to_train.txt").write_text("user01_fluorescent.aedat\r\n")
    (base / "trials_to_test.txt").write_text("user24_led.aedat\r\n")
    return tmp_path


def test_dvs_gesture_aedat_windows(tmp_path: Path) -> None:
    """Each labelled window is a sample with class - 1; events are placed at their (p, y, x) and time bin."""
    splits = build(name="dvs_gesture", root=str(gesture_root(tmp_path)), frames={"time_steps": 4, "bin_ms": 1})
    assert splits.input_shape == (2, 128, 128) and splits.num_classes == 11
    assert len(splits.train) == 2 and len(splits.test) == 1
    x, y = splits.train[0]
    assert y == 2 and x.shape == (4, 2, 128, 128) and x.sum() == 3
    assert x[0, 1, 20, 10] == 1 and x[1, 0, 20, 11] == 1 and x[2, 1, 5, 127] == 1  # t - 500 µs in 1 ms bins
    x, y = splits.train[1]
    assert y == 10 and x.sum() == 2 and x[0, 1, 70, 60] == 1 and x[0, 1, 70, 61] == 1


def test_cifar10_dvs_aedat2(tmp_path: Path) -> None:
    """Original AEDAT 2.0 files, split per class by file number; addresses mapped as SpikingJelly maps them."""
    from tonic.datasets import CIFAR10DVS

    for name in CIFAR10DVS.classes:
        (tmp_path / "CIFAR10DVS" / name).mkdir(parents=True)
    for n in range(4):
        events = [(cifar10dvs_address(3 + n, 100, 1), 5_000), (cifar10dvs_address(50, 7, 0), 5_000 + 1_000 * (n + 1))]
        write_aedat2(tmp_path / "CIFAR10DVS" / "cat" / f"cifar10_cat_{n * 5}.aedat", events)
    splits = build(name="cifar10_dvs", root=str(tmp_path), train_fraction=0.75, frames={"time_steps": 10, "bin_ms": 1})
    assert len(splits.train) == 3 and len(splits.test) == 1
    x, y = splits.test[0]  # cifar10_cat_15: the highest file number
    assert y == 3 and x.shape == (10, 2, 128, 128) and x.sum() == 2
    assert x[0, 1, 100, 6] == 1 and x[4, 0, 7, 50] == 1


# --- options, caching, offline errors, damaged files ---------------------------------------------------


def test_options_that_do_not_fit_are_refused(nmnist_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.augment\.random_crop: needs data\.frames\.crop"):
        build(name="nmnist", root=str(nmnist_root), augment={"random_crop": True})
    with pytest.raises(ConfigError, match=r"data\.frames\.crop: applies to camera data"):
        build(name="shd", root=str(tmp_path), frames={"crop": 10})
    with pytest.raises(ConfigError, match=r"data\.augment\.flip_lr: applies to camera data"):
        build(name="shd", root=str(tmp_path), augment={"flip_lr": 0.5})
    with pytest.raises(ConfigError, match=r"data\.frames\.crop: \[40, 40\] is larger than the 17 x 17 sensor"):
        build(name="nmnist", root=str(nmnist_root), frames={"downsample": 2, "crop": 40})


def test_augmentations_change_training_frames_only(nmnist_root: Path) -> None:
    """Random crop, flips, jitter and drops vary per draw on the training split; the test split is fixed."""
    augment = {"random_crop": True, "flip_lr": 0.5, "time_jitter_ms": 2, "drop_event": 0.2, "event_drop": True}
    splits = build(name="nmnist", root=str(nmnist_root), frames={"time_steps": 6, "crop": 28}, augment=augment)
    np.random.seed(0)
    draws = [splits.train[0][0] for _ in range(4)]
    assert all(d.shape == (6, 2, 28, 28) for d in draws)
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert torch.equal(splits.test[0][0], splits.test[0][0])


def test_augmentation_is_fixed_by_seed_epoch_and_index(nmnist_root: Path) -> None:
    """Through the runner's per-sample generators an augmented sample repeats exactly (resume, several
    processes), differs from epoch to epoch, and leaves NumPy's global generator as it was."""
    from snnlab.sampling import SeededSamples

    augment = {"random_crop": True, "flip_lr": 0.5, "time_jitter_ms": 2, "drop_event": 0.2}
    splits = build(name="nmnist", root=str(nmnist_root), frames={"time_steps": 6, "crop": 28}, augment=augment)
    seeded = SeededSamples(splits.train, seed=3)
    state = np.random.get_state()[1].copy()
    assert torch.equal(seeded[(1, 0)][0], seeded[(1, 0)][0])
    assert any(not torch.equal(seeded[(1, 0)][0], seeded[(e, 0)][0]) for e in range(2, 6))
    assert np.array_equal(np.random.get_state()[1], state)


def cache_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "cache").rglob("*") if p.is_file())


def test_cache_is_keyed_by_parameters_and_source(nmnist_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames are read once per parameter set; a new parameter, an edited file or a damaged entry is never served."""
    nmnist = importlib.import_module("snnlab.datasets.nmnist")  # the module, not the builder of that name
    reads = []
    real_read = nmnist._read
    monkeypatch.setattr(nmnist, "_read", lambda sample, **o: reads.append(sample) or real_read(sample, **o))

    first = build(name="nmnist", root=str(nmnist_root), frames={"time_steps": 8, "bin_ms": 50})
    a = first.train[0][0]
    assert len(reads) == 1 and torch.equal(first.train[0][0], a) and len(reads) == 1
    assert not any(p.name.endswith(".tmp") for p in cache_files(nmnist_root))

    other = build(name="nmnist", root=str(nmnist_root), frames={"time_steps": 4, "bin_ms": 50})
    assert other.train[0][0].shape[0] == 4 and len(reads) == 2
    assert first.train.cache.folder != other.train.cache.folder

    recording = nmnist_root / "NMNIST" / "Train" / "1" / "00001.bin"
    recording.write_bytes(nmnist_records([(5, 6, 100, 1), (7, 8, 200, 0)]))
    os.utime(recording, ns=(1, 1))
    assert first.train[0][0].sum() == 2 and len(reads) == 3

    for entry in first.train.cache.folder.iterdir():
        entry.write_bytes(b"not hdf5")
    assert first.train[0][0].sum() == 2 and len(reads) == 4

    uncached = build(name="nmnist", root=str(nmnist_root), frames={"time_steps": 3}, cache=False)
    assert uncached.train.cache is None and uncached.train[0][0].shape == (3, 2, 34, 34)


def test_cache_round_trip(tmp_path: Path) -> None:
    """Sparse and dense frames, empty arrays and structured events come back equal, dtype and shape included."""
    from tonic.io import events_struct

    from snnlab.datasets.frame_cache import DiskCache

    sparse = np.zeros((5, 2, 7, 9), np.int16)
    sparse[1, 0, 3, 4], sparse[4, 1, 6, 8] = 3, 1
    dense = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    events = np.zeros(4, events_struct)
    events["x"], events["t"], events["p"] = [1, 2, 3, 4], [10, 20, 30, 40], [True, False, True, True]
    cache = DiskCache(tmp_path / "c")
    cache.check_writable()
    for i, value in enumerate([sparse, dense, np.zeros((0,), np.int16), events, events[:0]]):
        assert cache.get(str(i), lambda v=value: v) is value
        back = cache.get(str(i), lambda: pytest.fail("served from the cache"))
        assert back.dtype == value.dtype and back.shape == value.shape and np.array_equal(back, value)


def test_missing_data_names_files_and_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No files: the error names the dataset, each expected path under the root, and where to fetch it.
    The network can still be built (the shapes come from the options), and nothing is downloaded."""
    monkeypatch.setenv("SNNLAB_DATA", str(tmp_path / "data"))
    for name, expected, url in [
        ("nmnist", "NMNIST/Train", "https://data.mendeley.com/"),
        ("shd", "SHD/shd_train.h5", "https://zenkelab.org/datasets/shd_train.h5.zip"),
        ("dvs_gesture", "DVSGesture/DvsGesture/trials_to_train.txt", "https://ibm.ent.box.com/"),
        ("cifar10_dvs", "CIFAR10DVS/airplane", "https://figshare.com/"),
        ("ncars", "NCARS/n-cars_train/background", "https://www.prophesee.ai/"),
    ]:
        splits = build(name=name)
        with pytest.raises(MissingDataError) as info:
            len(splits.train)
        message = str(info.value)
        assert message.startswith(f"{name}: ") and str(tmp_path / "data" / expected) in message and url in message
        assert "$SNNLAB_DATA" in message
    assert not (tmp_path / "data").exists()


def test_data_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from snnlab.datasets.data_root import data_root

    monkeypatch.delenv("SNNLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root().path == tmp_path / "xdg" / "snnlab" / "data"
    monkeypatch.setenv("SNNLAB_DATA", str(tmp_path / "env"))
    assert data_root().path == tmp_path / "env"
    assert data_root(str(tmp_path / "yaml")).path == tmp_path / "yaml"


@needs_samples
def test_damaged_files_are_named(tmp_path: Path) -> None:
    """Truncated AEDAT 3.1 and HDF5 files, and the real header-only AEDAT 2.0 sample, each give an error naming the file."""
    root = gesture_root(tmp_path / "gesture")
    recording = root / "DVSGesture" / "DvsGesture" / "user01_fluorescent.aedat"
    recording.write_bytes(recording.read_bytes()[:-5])
    with pytest.raises(DataFileError, match=rf"{re.escape(str(recording))}: .*truncated"):
        build(name="dvs_gesture", root=str(root), cache=False).train[0]

    h5 = tmp_path / "shd" / "SHD" / "shd_train.h5"
    write_heidelberg(h5, heidelberg_samples(3, 20), 20)
    write_heidelberg(h5.with_name("shd_test.h5"), heidelberg_samples(1, 20), 20)
    h5.write_bytes(h5.read_bytes()[:1000])
    with pytest.raises(DataFileError, match=rf"{re.escape(str(h5))}: cannot read"):
        len(build(name="shd", root=str(tmp_path / "shd")).train)

    from tonic.datasets import CIFAR10DVS

    for name in CIFAR10DVS.classes:
        (tmp_path / "c10" / "CIFAR10DVS" / name).mkdir(parents=True)
    header_only = tmp_path / "c10" / "CIFAR10DVS" / "dog" / "cifar10_dog_0.aedat"
    shutil.copy(SAMPLES / "sample_aedat_header.aedat", header_only)
    with pytest.raises(DataFileError, match=rf"{re.escape(str(header_only))}: .*truncated"):
        build(name="cifar10_dvs", root=str(tmp_path / "c10"), train_fraction=0.5).test[0]


WORKER_SCRIPT = """
import sys
from snnlab.config import load_experiment
from snnlab.errors import DataFileError
from snnlab.distributed import Context
from snnlab.runner import build_experiment, data_loaders
import torch

cfg, _ = load_experiment("quickstart", ["data=nmnist", "data.root={root}", "data.batch_size=1", "data.cache=false", "data.validation_fraction=0",
                                        "network.blocks.0={{flatten: true}}", "network.blocks.1.linear=10"])
splits = build_experiment(cfg).splits
train = data_loaders(cfg, splits, Context(torch.device("cpu"))).train
train.sampler.set_epoch(1)
assert train.num_workers == 2 and train.persistent_workers
try:
    for _ in train:
        pass
except DataFileError as exc:
    print("ERROR", exc)
    sys.exit(0)
sys.exit("no error")
"""


def test_truncated_file_in_a_worker_is_named_without_hanging(nmnist_root: Path) -> None:
    """Through the runner's loaders (2 workers by default for event data): the error names the file."""
    broken = nmnist_root / "NMNIST" / "Train" / "1" / "00000.bin"
    broken.write_bytes((SAMPLES / "sample_nmnist.bin").read_bytes()[:1003])
    script = WORKER_SCRIPT.format(root=nmnist_root)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ERROR" in done.stdout and f"{broken}: cannot read this N-MNIST file" in done.stdout
    assert "truncated" in done.stdout


def test_snnlab_imports_and_runs_digits_without_tonic() -> None:
    """tonic is imported only when event data is used; without it an event dataset says how to install it."""
    script = textwrap.dedent("""
        import sys
        sys.modules["tonic"] = None  # as if not installed
        import snnlab, snnlab.cli, snnlab.runner
        from snnlab.config import load_experiment
        from snnlab.errors import SnnlabError
        from snnlab.runner import build_experiment
        build_experiment(load_experiment()[0])
        try:
            build_experiment(load_experiment(None, ["data=nmnist", "network.blocks.0={flatten: true}"])[0])
        except SnnlabError as exc:
            assert "pip install tonic" in str(exc), exc
        else:
            sys.exit("no error")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


# --- experiments and the command line ---------------------------------------------------------------


EVENT_EXPERIMENTS = sorted(p.name for p in (REPO / "experiments").glob("*.yaml") if p.stem != "quickstart")


@pytest.mark.parametrize("name", EVENT_EXPERIMENTS)
def test_event_experiments_check_offline(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`snnlab check` validates each experiment and builds its network with no data present."""
    from typer.testing import CliRunner

    from snnlab.cli import app

    monkeypatch.setenv("SNNLAB_DATA", str(tmp_path))
    result = CliRunner().invoke(app, ["check", str(REPO / "experiments" / name)])
    assert result.exit_code == 0, result.output
    assert f"{name}: valid" in result.output


def test_datasets_command(nmnist_root: Path) -> None:
    from typer.testing import CliRunner

    from snnlab.cli import app

    result = CliRunner().invoke(app, ["datasets", "--root", str(nmnist_root)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()[2:]}
    assert set(rows) == set(DATASETS.names())
    assert "[2, 34, 34]" in rows["nmnist"] and rows["nmnist"].endswith("present")
    assert "[700]" in rows["shd"] and f"missing {nmnist_root / 'SHD' / 'shd_train.h5'}" in rows["shd"]
    assert rows["digits"].endswith("bundled")


def test_event_data_trains_with_loader_workers(tmp_path: Path) -> None:
    """A short run on synthetic SHD files through the runner: 2 persistent workers, frames cached on disk."""
    from snnlab.config import load_experiment
    from snnlab.runner import run

    write_heidelberg(tmp_path / "SHD" / "shd_train.h5", heidelberg_samples(8, 20), 20)
    write_heidelberg(tmp_path / "SHD" / "shd_test.h5", heidelberg_samples(4, 20), 20)
    overrides = [
        f"data.root={tmp_path}",
        "data.batch_size=4",
        "data.frames.time_steps=10",
        "data.frames.bin_ms=100",
        "network.blocks.0.linear=16",
        "train.epochs=1",
        f"output.root={tmp_path / 'runs'}",
        "output.plots=false",
    ]
    cfg, source = load_experiment(REPO / "experiments" / "shd_lif_bptt.yaml", overrides)
    result = run(cfg, source, progress=False)
    assert result.summary["epochs"] == 1 and 0.0 <= result.summary["test_accuracy"] <= 1.0
    assert len(cache_files(tmp_path)) == 12
