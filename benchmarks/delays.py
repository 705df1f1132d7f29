"""Learnable synaptic delays (snnlab's ``delay`` synapse): (a) what delays buy on the generated timing task,
(b) what the synapse costs against the dense temporal convolution it replaces and against the ``dcls`` package.

(a) ``accuracy``: ``experiments/timing_delays.yaml`` trained with no delays (a ``linear`` synapse), fixed random
delays (``mode: random``) and learned delays (``mode: learned``), over seeds; the table gives the test accuracy at
the epoch chosen on validation, mean and standard deviation. The paper's ordering is learned > random > none.

(b) ``speed``: one layer ``[T, B, in] -> [T, B, out]`` with delays 0 .. D - 1, forward + backward of
``y.square().mean()``, for each D:

- ``snnlab learned``: the training form (Gaussian kernel through ``gaussian_kernel``, one causal ``conv1d``);
- ``snnlab eval``: the evaluation form (one tap per connection), forward only, without autograd;
- ``snnlab step loop``: the same layer stepped over T (what ``step`` costs; the ring of past inputs);
- ``autograd gaussian``: the training form with the Gaussian built by plain autograd (what the custom backward
  avoids keeping);
- ``dense conv``: ``nn.Conv1d(in, out, D)`` on the left-padded input, every tap a free weight: the dense temporal
  convolution that one delay per connection replaces;
- ``dcls``: ``DCLS.construct.modules.Dcls1d(in, out, kernel_count=1, dilated_kernel_size=D, version="gauss")`` on
  the left-padded input (the paper's layer, without its right padding), when the package is installed;
- ``gather``: the evaluation form written as one gathered tap per connection (``[T, B, out, in]`` materialised),
  forward only, to show why it is not used (skipped when that tensor would exceed 2 GiB).

Time: minimum (and median) of ``--reps`` calls after one warm-up, ``--threads`` torch threads. Memory, in MiB:
"peak" is the process's resident high-water mark during one call above its resident size before it (Linux: the
mark is reset through ``/proc/self/clear_refs``; the script re-executes itself with glibc's mmap threshold fixed
at 64 KiB, so that freed tensors go back to the system and each call's peak is its own); "kept" is the bytes of
the distinct storages autograd saves for backward (``saved_tensors_hooks``), besides the input.

    python benchmarks/delays.py accuracy --seeds 0 1 2
    python benchmarks/delays.py speed --max-delay 8 25 64 --T 100 --batch 32 --features 256 --reps 10 --out d.json
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # snnlab from this source tree

from snnlab.synapses.delay import DelaySynapse, delayed_sum, integer_kernel  # noqa: E402

MMAP_THRESHOLD = "65536"

# ---- (a) accuracy on the timing task ----------------------------------------------------------------------------


def variant(raw: dict, kind: str) -> dict:
    """``raw`` (the timing experiment) with its delay synapses learned, random or replaced by linear ones."""
    raw = copy.deepcopy(raw)
    for block in raw["network"]["blocks"]:
        options = block.pop("delay")
        if kind == "none":
            block["linear"] = {"out_features": options["out_features"], "bias": options.get("bias", False)}
        else:
            block["delay"] = {**options, "mode": kind}
    if kind != "learned":  # no positions to train
        raw["train"]["optimizer"]["groups"] = []
    return raw


def accuracy(args: argparse.Namespace) -> dict:
    from snnlab.config import apply_overrides, validate
    from snnlab.runner import run

    base = apply_overrides(yaml.safe_load(Path(args.config).read_text()), args.set)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("none", "random", "learned"):
            for seed in args.seeds:
                raw = variant(base, kind)
                raw.update(seed=seed, device="cpu", output={"dir": f"{tmp}/{kind}-{seed}", "plots": False})
                result = run(validate(raw), args.config, progress=False)
                best = result.summary
                rows.append({"delays": kind, "seed": seed, "best_test_accuracy": best["best_test_accuracy"],
                             "last_test_accuracy": best["test_accuracy"]})  # fmt: skip
                print(f"{kind:8s} seed {seed}: {100 * best['best_test_accuracy']:.2f}%", file=sys.stderr)
    print("| delays | test accuracy (best on validation), mean +- sd | per seed |\n|---|---|---|")
    for kind in ("none", "random", "learned"):
        acc = [100 * r["best_test_accuracy"] for r in rows if r["delays"] == kind]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        print(f"| {kind} | {statistics.mean(acc):.2f} +- {sd:.2f} | {', '.join(f'{a:.2f}' for a in acc)} |")
    return {"config": args.config, "overrides": args.set, "results": rows}


# ---- (b) time and memory of one layer ---------------------------------------------------------------------------


def resident_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_bytes(call: Callable[[], object]) -> int:
    """The resident high-water mark during ``call()`` above the resident size before it."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current VmRSS
    before = resident_bytes("VmRSS")
    call()
    return resident_bytes("VmHWM") - before


def kept_bytes(layer: Callable[[Tensor], Tensor], x: Tensor) -> int:
    """Bytes of the distinct storages autograd saves during ``layer(x)``, besides ``x``'s."""
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    return sum(n for ptr, n in storages.items() if ptr != x.untyped_storage().data_ptr())


def plain_gaussian_kernel(weight: Tensor, positions: Tensor, sigma: float, max_delay: int) -> Tensor:
    taps = torch.arange(max_delay - 1, -1, -1, dtype=weight.dtype)
    g = torch.exp(-0.5 * ((taps - positions.unsqueeze(-1)) / sigma) ** 2)
    return weight.unsqueeze(-1) * g / g.sum(-1, keepdim=True)


def cases(features: int, max_delay: int, shape: tuple[int, int]) -> dict[str, tuple[Callable[[Tensor], Tensor], bool]]:
    """name -> (layer as a function of ``x [T, B, in]``, whether it is timed forward + backward)."""
    T, B = shape
    torch.manual_seed(0)
    learned = DelaySynapse(features, features, max_delay).train()
    evaluated = copy.deepcopy(learned).eval()
    sigma = float(learned.sigma)
    dense = nn.Conv1d(features, features, max_delay, bias=False)

    def step_loop(x: Tensor) -> Tensor:
        state, out = learned.initial_state(x[0]), []
        for x_t in x:
            y, state = learned.step(x_t, state)
            out.append(y)
        return torch.stack(out)

    def gather(x: Tensor) -> Tensor:
        delays = evaluated.delays()  # [out, in]
        padded = F.pad(x, (0, 0, 0, 0, max_delay - 1, 0))  # [T + D - 1, B, in]
        rows = torch.arange(T).view(T, 1, 1) + (max_delay - 1 - delays)  # [T, out, in]
        taps = padded[rows, :, torch.arange(features)]  # [T, out, in, B]
        return torch.einsum("toib,oi->tbo", taps, evaluated.weight)

    table: dict[str, tuple[Callable[[Tensor], Tensor], bool]] = {
        "snnlab learned": (lambda x: learned(x)[0], True),
        "snnlab eval": (lambda x: evaluated(x)[0], False),
        "snnlab step loop": (step_loop, True),
        "autograd gaussian": (
            lambda x: delayed_sum(x, plain_gaussian_kernel(learned.weight, learned.positions, sigma, max_delay), None),
            True,
        ),
        "dense conv": (lambda x: dense(F.pad(x.permute(1, 2, 0), (max_delay - 1, 0))).permute(2, 0, 1), True),
    }
    if T * B * features * features * 4 <= 2**31:
        table["gather"] = (gather, False)
    try:
        from DCLS.construct.modules import Dcls1d
    except ImportError:
        print('dcls is not installed (pip install -e ".[bench]"): its row is left out', file=sys.stderr)
    else:
        dcls = Dcls1d(features, features, kernel_count=1, dilated_kernel_size=max_delay, version="gauss", bias=False)
        with torch.no_grad():
            dcls.SIG.fill_(sigma)
        dcls.SIG.requires_grad_(False)
        table["dcls"] = (lambda x: dcls(F.pad(x.permute(1, 2, 0), (max_delay - 1, 0))).permute(2, 0, 1), True)
    # the integer kernel of the evaluation form equals the gather's taps: a check that the gather row is right
    if "gather" in table:
        x = (torch.rand(T, B, features) < 0.1).float()
        with torch.no_grad():
            direct = delayed_sum(x, integer_kernel(evaluated.weight, evaluated.delays(), max_delay), None)
            assert torch.allclose(table["gather"][0](x), direct, atol=1e-4)
    return table


def measure(layer: Callable[[Tensor], Tensor], backward: bool, x: Tensor, reps: int) -> dict[str, float]:
    """Time (ms), peak and kept memory (MiB) of ``layer`` on ``x``: forward + backward, or forward alone."""

    def call() -> None:
        if backward:
            layer(x.clone().requires_grad_()).square().mean().backward()
        else:
            with torch.no_grad():
                layer(x)

    call()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - start))
    peak = peak_bytes(call)
    kept = kept_bytes(layer, x.clone().requires_grad_()) if backward else 0
    return {
        "ms_min": min(times),
        "ms_median": statistics.median(times),
        "peak_mib": peak / 2**20,
        "kept_mib": kept / 2**20,
    }


def speed(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    x = (torch.rand(args.T, args.batch, args.features, generator=torch.Generator().manual_seed(1)) < 0.1).float()
    results = []
    for max_delay in args.max_delay:
        for name, (layer, backward) in cases(args.features, max_delay, (args.T, args.batch)).items():
            if args.cases and name not in args.cases:
                continue
            row = {"max_delay": max_delay, "case": name, "mode": "fwd+bwd" if backward else "fwd"}
            row.update(measure(layer, backward, x, args.reps))
            results.append(row)
            print(
                f"D={max_delay:3d} {name:18s} {row['mode']:7s} {row['ms_min']:9.2f} ms ({row['ms_median']:.2f})  "
                f"peak {row['peak_mib']:8.1f} MiB  kept {row['kept_mib']:8.1f} MiB",
                file=sys.stderr,
            )
    print("| D | case | pass | ms (median) | peak MiB | kept MiB |\n|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['max_delay']} | {r['case']} | {r['mode']} | {r['ms_min']:.2f} ({r['ms_median']:.2f}) | "
            f"{r['peak_mib']:.1f} | {r['kept_mib']:.1f} |"
        )
    return {"T": args.T, "batch": args.batch, "features": args.features, "threads": args.threads, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("accuracy", help="no / random / learned delays on the timing task, over seeds")
    a.add_argument("--config", default=str(ROOT / "experiments" / "timing_delays.yaml"))
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a.add_argument("--set", nargs="*", default=[], help="overrides of the config, KEY=VALUE")
    s = sub.add_parser("speed", help="time and peak memory of one layer against the dense convolution and dcls")
    s.add_argument("--max-delay", type=int, nargs="+", default=[8, 25, 64])
    s.add_argument("--T", type=int, default=100)
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--features", type=int, default=256)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--reps", type=int, default=10)
    s.add_argument("--cases", nargs="*", default=[], help="only these cases (names as in the table)")
    for p in (a, s):
        p.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.command == "speed" and os.environ.get("MALLOC_MMAP_THRESHOLD_") != MMAP_THRESHOLD:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD})
    report = accuracy(args) if args.command == "accuracy" else speed(args)
    report.update(
        date=datetime.date.today().isoformat(), torch=torch.__version__, python=platform.python_version(),
        machine=platform.processor() or platform.machine(), command=" ".join(sys.argv),
    )  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
