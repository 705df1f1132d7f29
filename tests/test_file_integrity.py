"""Checkpoints, weights and plots against damage: every truncation, flipped bit or structural change of a real
``checkpoint.pt`` or ``last.safetensors`` either loads to exactly the saved tensors or is refused with a
``SnnlabError`` naming the file; full and read-only disks are reported as such; nothing is left half-written."""

from __future__ import annotations

import copy
import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from snnlab import checkpoint
from snnlab.config import resolve_experiment, validate
from snnlab.errors import SnnlabError
from snnlab.runner import build_experiment, build_rule, run
from snnlab.storage import DIGEST_KEY, load_weights, save_weights

EXAMPLES = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A one-epoch quickstart run's folder, the modules to load into, and what its files hold."""
    folder = tmp_path_factory.mktemp("integrity") / "run"
    raw = yaml.safe_load(resolve_experiment(None).read_text())
    raw["train"]["epochs"] = 1
    raw["output"] = {"dir": str(folder), "plots": False}
    cfg = validate(raw)
    run(cfg, "test", progress=False)
    _, network, objective, _ = build_experiment(cfg)
    rule = build_rule(cfg, network, objective)
    return {
        "folder": folder,
        "modules": (network, rule),
        "checkpoint": (folder / "checkpoint.pt").read_bytes(),
        "weights": (folder / "last.safetensors").read_bytes(),
        "state": checkpoint.load(folder / "checkpoint.pt"),
    }


def fresh(real: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    """An untrained copy of the network and its rule (the rule's optimizer pointing at the copy's parameters)."""
    return copy.deepcopy(real["modules"])


def same_tensors(module: nn.Module, expected: dict[str, Tensor]) -> bool:
    found = module.state_dict()
    return set(found) == set(expected) and all(
        found[k].dtype == v.dtype and torch.equal(found[k], v) for k, v in expected.items()
    )


def refused_or_exact(path: Path, load: Callable[[], Any], check: Callable[[Any], bool]) -> None:
    """``load()`` raises a SnnlabError naming ``path``, or what it loaded passes ``check``; nothing else."""
    try:
        loaded = load()
    except SnnlabError as exc:
        assert str(path) in str(exc), str(exc)
        return
    assert check(loaded), "loaded, but with other tensors than were saved"


def damage(data: bytes, how: st.DataObject) -> bytes:
    """One truncation, or one to three flipped bits, of ``data``."""
    if how.draw(st.booleans(), label="truncate"):
        return data[: how.draw(st.integers(0, len(data) - 1), label="keep")]
    damaged = bytearray(data)
    for _ in range(how.draw(st.integers(1, 3), label="flips")):
        bit = how.draw(st.integers(0, 8 * len(data) - 1), label="bit")
        damaged[bit // 8] ^= 1 << (bit % 8)
    return bytes(damaged)


# ---- checkpoint.pt


def restore(path: Path, real: dict[str, Any]) -> tuple[dict[str, Any], nn.Module, nn.Module]:
    network, rule = fresh(real)
    state = checkpoint.load(path)
    checkpoint.restore(state, path, network, rule)
    return state, network, rule


def restored_exactly(loaded: tuple[dict[str, Any], nn.Module, nn.Module], saved: dict[str, Any]) -> bool:
    _, network, rule = loaded
    return same_tensors(network, saved["network"]) and same_tensors(rule, saved["rule"])


@EXAMPLES
@given(how=st.data())
def test_damaged_checkpoint_is_refused_or_loads_exactly(
    real: dict[str, Any], tmp_path: Path, how: st.DataObject
) -> None:
    """Truncations and bit flips anywhere in a real checkpoint: refused (the digest), never resumed to other numbers."""
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(damage(real["checkpoint"], how))
    refused_or_exact(path, lambda: restore(path, real), lambda loaded: restored_exactly(loaded, real["state"]))


def _tensor_mutations() -> list[Callable[[Tensor], Any]]:
    return [
        lambda t: t.to(torch.int64),
        lambda t: t.to(torch.float64),
        lambda t: t.reshape(-1)[:-1] if t.numel() else torch.zeros(1),
        lambda t: t.unsqueeze(0),
        lambda t: t.tolist(),
        lambda t: None,
    ]


WRONG_VALUES = [None, 0, 1.5, "x", [], {}, (), torch.zeros(2)]


def mutate(state: dict[str, Any], how: st.DataObject) -> dict[str, Any]:
    """One structural change of a checkpoint's state: a key dropped, added or of another type, a tensor of
    another dtype or shape, a progress field of another type, an optimizer's or generator's state replaced."""
    state = copy.deepcopy(state)
    top = how.draw(st.sampled_from(sorted(state)), label="key")
    kind = how.draw(st.sampled_from(["drop", "add", "retype", "inner"]), label="kind")
    if kind == "drop":
        del state[top]
    elif kind == "add":
        state[how.draw(st.text(min_size=1, max_size=5), label="new key")] = 1
    elif kind == "retype":
        state[top] = how.draw(st.sampled_from(WRONG_VALUES), label="value")
    elif top in ("network", "rule") and state[top]:
        name = how.draw(st.sampled_from(sorted(state[top])), label="tensor")
        state[top][name] = how.draw(st.sampled_from(_tensor_mutations()), label="change")(state[top][name])
    elif isinstance(state[top], dict) and state[top]:
        inner = how.draw(st.sampled_from(sorted(state[top], key=str)), label="inner key")
        if how.draw(st.booleans(), label="drop inner"):
            del state[top][inner]
        else:
            state[top][inner] = how.draw(st.sampled_from(WRONG_VALUES), label="inner value")
    elif isinstance(state[top], list) and state[top]:
        state[top][0] = how.draw(st.sampled_from(WRONG_VALUES), label="first item")
    else:
        state[top] = how.draw(st.sampled_from(WRONG_VALUES), label="value")
    return state


@EXAMPLES
@given(how=st.data())
def test_structurally_wrong_checkpoint_is_refused_or_loads_exactly(
    real: dict[str, Any], tmp_path: Path, how: st.DataObject
) -> None:
    """Well-formed files (a valid digest) of the wrong structure: refused naming the file, never a KeyError,
    TypeError or the like, and never tensors cast or reshaped on the way in."""
    path = tmp_path / "checkpoint.pt"
    state = mutate(real["state"], how)
    checkpoint.save(path, state)
    refused_or_exact(path, lambda: restore(path, real), lambda loaded: restored_exactly(loaded, state))


def test_one_flipped_bit_is_named_as_corruption(real: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    data = bytearray(real["checkpoint"])
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(SnnlabError, match=r"checkpoint.pt: not a readable checkpoint, truncated or corrupt: .*SHA-256"):
        checkpoint.load(path)


NO_TRAILER = r"not a readable checkpoint, truncated or corrupt: it does not end with snnlab's checkpoint trailer"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", r"not a readable checkpoint: the file is empty \(0 bytes\)"),
        (bytes(range(256)) * 4, NO_TRAILER),
        (None, NO_TRAILER),  # cut in half
    ],
    ids=["empty", "random", "cut"],
)
def test_empty_random_or_cut_checkpoint_is_not_called_python_objects(
    real: dict[str, Any], tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(real["checkpoint"][: len(real["checkpoint"]) // 2] if content is None else content)
    with pytest.raises(SnnlabError, match=rf"checkpoint.pt: {expected}") as caught:
        checkpoint.load(path)
    assert "Python objects" not in str(caught.value)


def test_int64_cast_checkpoint_is_refused_naming_the_tensor(real: dict[str, Any], tmp_path: Path) -> None:
    state = copy.deepcopy(real["state"])
    state["network"]["blocks.0.synapse.weight"] = state["network"]["blocks.0.synapse.weight"].to(torch.int64)
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, state)
    with pytest.raises(SnnlabError, match=r"'blocks.0.synapse.weight' has dtype torch.int64 in the checkpoint but "):
        restore(path, real)


def test_missing_key_is_named(real: dict[str, Any], tmp_path: Path) -> None:
    state = {k: v for k, v in real["state"].items() if k != "progress"}
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, state)
    with pytest.raises(
        SnnlabError, match=r"checkpoint.pt: not a snnlab checkpoint of format 3: progress: Field required"
    ):
        checkpoint.load(path)


def test_checkpoint_still_reads_with_plain_torch_load(real: dict[str, Any]) -> None:
    """The trailer does not stop ``torch.load(weights_only=True)`` from reading the file (without the checks)."""
    state = torch.load(real["folder"] / "checkpoint.pt", weights_only=True)
    assert torch.equal(state["network"]["blocks.0.synapse.weight"], real["state"]["network"]["blocks.0.synapse.weight"])


# ---- last.safetensors


def load_into_copy(path: Path, real: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    network, rule = fresh(real)
    load_weights(path, {"network": network, "rule": rule})
    return network, rule


def loaded_exactly(loaded: tuple[nn.Module, nn.Module], saved: dict[str, Any]) -> bool:
    return same_tensors(loaded[0], saved["network"]) and same_tensors(loaded[1], saved["rule"])


def split_header(data: bytes) -> tuple[dict[str, Any], bytes]:
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def join_header(header: dict[str, Any], body: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return len(encoded).to_bytes(8, "little") + encoded + body


def mutate_header(data: bytes, how: st.DataObject) -> bytes:
    """One change to a safetensors header, re-encoded so the file still parses as far as possible: a tensor's
    dtype, shape or offsets changed, a tensor dropped, the digest dropped, or a metadata value changed."""
    header, body = split_header(data)
    names = sorted(k for k in header if k != "__metadata__")
    name = how.draw(st.sampled_from(names), label="tensor")
    kind = how.draw(st.sampled_from(["dtype", "shape", "offsets", "drop", "no digest", "metadata"]), label="kind")
    if kind == "dtype":
        header[name]["dtype"] = how.draw(st.sampled_from(["I32", "F16", "I64", "U8", "BF16", "X"]), label="dtype")
    elif kind == "shape":
        header[name]["shape"] = how.draw(st.lists(st.integers(0, 300), max_size=3), label="shape")
    elif kind == "offsets":
        begin, end = header[name]["data_offsets"]
        shift = how.draw(st.integers(-8, 8), label="shift")
        header[name]["data_offsets"] = [begin + shift, end + shift]
    elif kind == "drop":
        del header[name]
    elif kind == "no digest":
        del header["__metadata__"][DIGEST_KEY]
    else:
        header["__metadata__"]["epoch"] = how.draw(st.text(max_size=3), label="epoch")
    return join_header(header, body)


@EXAMPLES
@given(how=st.data())
def test_damaged_weights_are_refused_or_load_exactly(real: dict[str, Any], tmp_path: Path, how: st.DataObject) -> None:
    """Truncations, bit flips and header changes of a real ``last.safetensors``: refused naming the file, or
    loaded to exactly the saved tensors; never another exception."""
    path = tmp_path / "last.safetensors"
    if how.draw(st.booleans(), label="structural"):
        path.write_bytes(mutate_header(real["weights"], how))
    else:
        path.write_bytes(damage(real["weights"], how))
    saved = {"network": real["state"]["network"], "rule": real["state"]["rule"]}
    refused_or_exact(path, lambda: load_into_copy(path, real), lambda loaded: loaded_exactly(loaded, saved))


def test_weights_without_digest_are_refused(real: dict[str, Any], tmp_path: Path) -> None:
    """Two flipped bits could otherwise rename the digest's key and change a tensor: no digest, no load."""
    header, body = split_header(real["weights"])
    del header["__metadata__"][DIGEST_KEY]
    path = tmp_path / "last.safetensors"
    path.write_bytes(join_header(header, body))
    with pytest.raises(SnnlabError, match=r"last.safetensors: not a readable safetensors checkpoint: it has no snnlab"):
        load_into_copy(path, real)


def test_changed_metadata_is_refused(real: dict[str, Any], tmp_path: Path) -> None:
    header, body = split_header(real["weights"])
    header["__metadata__"]["epoch"] = "7"
    path = tmp_path / "last.safetensors"
    path.write_bytes(join_header(header, body))
    with pytest.raises(SnnlabError, match=r"last.safetensors: not a readable safetensors checkpoint, corrupt"):
        load_into_copy(path, real)


@pytest.mark.parametrize("name", ["checkpoint.pt", "last.safetensors"])
def test_folder_in_place_of_a_file_is_named_a_folder(real: dict[str, Any], tmp_path: Path, name: str) -> None:
    (tmp_path / name).mkdir()
    load = checkpoint.load if name == "checkpoint.pt" else lambda path: load_into_copy(path, real)
    with pytest.raises(SnnlabError, match=rf"{name}: is a folder, not a .*file") as caught:
        load(tmp_path / name)
    assert "truncated" not in str(caught.value)


# ---- full and read-only disks


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``fail(code, *names)``: writes of the temporaries of ``names`` land a few bytes, then fail with
    ``OSError(code)``, as on a full (ENOSPC) or read-only (EROFS) disk."""
    real_open = open

    def fail(code: int, *names: str) -> None:
        def failing_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_open(file, mode, *args, **kwargs)
            if "w" in mode and Path(str(file)).name.startswith(tuple(f".{name}." for name in names)):
                return _FailingWriter(handle, code)
            return handle

        monkeypatch.setattr("builtins.open", failing_open)
        monkeypatch.setattr("io.open", failing_open)

    return fail


class _FailingWriter:
    """A file whose first write lands a few bytes and then fails, as a disk does when it fills up."""

    def __init__(self, handle: Any, code: int) -> None:
        self.handle, self.code = handle, code

    def write(self, data: bytes) -> int:
        self.handle.write(data[:3])
        raise OSError(self.code, os.strerror(self.code))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> _FailingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_weights_and_checkpoint_on_a_failing_disk_name_the_os_error(
    real: dict[str, Any], tmp_path: Path, full_disk: Callable[..., None], code: int
) -> None:
    """The OS's reason ("No space left on device"), the file, and that the previous version is intact."""
    network, rule = fresh(real)
    (tmp_path / "last.safetensors").write_bytes(real["weights"])
    (tmp_path / "checkpoint.pt").write_bytes(real["checkpoint"])
    full_disk(code, "last.safetensors", "checkpoint.pt")
    reason = os.strerror(code)
    with pytest.raises(SnnlabError, match=rf"last.safetensors: could not be written \({reason}\); the previous"):
        save_weights(tmp_path / "last.safetensors", {"network": network, "rule": rule})
    with pytest.raises(SnnlabError, match=rf"checkpoint.pt: could not be written \({reason}\); the previous"):
        checkpoint.save(tmp_path / "checkpoint.pt", real["state"])
    assert (tmp_path / "last.safetensors").read_bytes() == real["weights"]
    assert (tmp_path / "checkpoint.pt").read_bytes() == real["checkpoint"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "last.safetensors"]


def _rows() -> list[dict[str, float]]:
    return [{"epoch": e, "loss": 1.0 / e, "train_accuracy": 0.5, "test_accuracy": 0.6} for e in (1, 2)]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_plot_on_a_failing_disk_is_a_message_and_keeps_the_old_png(
    tmp_path: Path, full_disk: Callable[..., None], code: int
) -> None:
    from snnlab.plots import plot_curves

    plot_curves(_rows(), tmp_path / "curves.png", "accuracy")
    before = (tmp_path / "curves.png").read_bytes()
    full_disk(code, "curves.png")
    reason = os.strerror(code)
    with pytest.raises(SnnlabError, match=rf"curves.png: could not be written \({reason}\); the previous"):
        plot_curves(_rows()[:1], tmp_path / "curves.png", "accuracy")
    assert (tmp_path / "curves.png").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_plot_interrupted_while_writing_leaves_no_empty_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop in the middle of ``savefig`` (the file half-written) leaves no ``curves.png`` at all."""
    from matplotlib.figure import Figure

    from snnlab.plots import plot_curves

    real_savefig = Figure.savefig

    def stopped(self: Figure, fname: Any, *args: Any, **kwargs: Any) -> None:
        real_savefig(self, fname, *args, **kwargs)
        Path(fname).write_bytes(Path(fname).read_bytes()[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", stopped)
    with pytest.raises(KeyboardInterrupt):
        plot_curves(_rows(), tmp_path / "curves.png", "accuracy")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, where mounting one is allowed (root in a container); skipped elsewhere."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_really_full_disk_is_named(small_tmpfs: Path) -> None:
    """On a real full filesystem: weights, checkpoint and plot each give the OS's reason, with no temporary left."""
    from snnlab.plots import plot_curves

    big = nn.Linear(256, 256)
    with pytest.raises(SnnlabError, match=r"w.safetensors: could not be written \(No space left on device\)"):
        save_weights(small_tmpfs / "w.safetensors", {"network": big})
    with pytest.raises(SnnlabError, match=r"checkpoint.pt: could not be written \(No space left on device\)"):
        checkpoint.save(small_tmpfs / "checkpoint.pt", {"network": big.state_dict()})
    (small_tmpfs / "filler").write_bytes(b"\0" * (60 * 1024))
    with pytest.raises(SnnlabError, match=r"curves.png: could not be written \(No space left on device\)"):
        plot_curves(_rows(), small_tmpfs / "curves.png", "accuracy")
    assert [p.name for p in small_tmpfs.iterdir()] == ["filler"]
