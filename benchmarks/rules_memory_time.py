"""Peak memory and time per training iteration of BPTT, SLTT, SLTT-K and rate-based backpropagation on the same
networks, against T, with SpikingJelly's SLTT on the conv network as the anchor; all measured in one process run.

Networks: the digits MLP of ``experiments/quickstart.yaml`` (64-128-10, LIF, mean-membrane readout) and the
DVS-Gesture network of ``experiments/dvs_gesture_plif_bptt.yaml`` (five conv128-BN-PLIF-pool blocks, FC512, FC11,
spike counts) with average pooling and without dropout, which rate-BP requires (it refuses max pooling and per-step
dropout masks), for every rule. Inputs are random: digits-like currents in [0, 1) and event frames with 10% of the
pixels on, ``[T, B, 2, H, W]``; Adam at lr 1e-3. Each rule is one ``train_step`` of snnlab's ``RULES`` entry (the
fused kernels: Triton on CUDA, Numba on the CPU). SpikingJelly's SLTT: its ``SLTTLIFNode`` (tau 2, decay_input, hard
reset to 0, detached reset, ATan) in single-step mode with ``nn.Conv2d``/``BatchNorm2d`` called per step, one
backward per step, as its online-training examples run it.

Time: CPU, the median of ``--reps`` iterations after ``--warmup``; CUDA, CUDA events around each iteration.
Memory: CUDA, ``max_memory_allocated`` during the timed iterations minus what was allocated before them (weights,
optimizer state, the batch); CPU, the peak resident set size during them (``/proc/self/status`` VmHWM, reset through
``/proc/self/clear_refs``) minus the resident size before them. Each case's ratio to BPTT at the same T is printed.

    python benchmarks/rules_memory_time.py --device cpu --T 4 8 16 32 64 --out cpu.json
    python benchmarks/rules_memory_time.py --device cuda --T 4 8 16 32 64 --out cuda.json
    python benchmarks/rules_memory_time.py --device cpu --T 2 --hw 16 --batch 2 --reps 1 --warmup 1   # smoke
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import platform
import re
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # snnlab from this source tree

from snnlab.builder import build_network  # noqa: E402
from snnlab.config import validate  # noqa: E402
from snnlab.objectives import Classification  # noqa: E402
from snnlab.optim import TrainConfig  # noqa: E402
from snnlab.rules import RULES  # noqa: E402

RULE_CASES: dict[str, dict[str, Any]] = {
    "bptt": {"name": "bptt"},
    "sltt": {"name": "sltt"},
    "sltt-chunk4": {"name": "sltt", "chunk": 4},
    "sltt-k4": {"name": "sltt", "k": 4},
    "rate_bp": {"name": "rate_bp"},
}


def network_config(name: str, hw: int) -> tuple[dict[str, Any], tuple[int, ...], int, str]:
    """The ``network`` section, input shape, classes and readout of a benchmark network."""
    if name == "digits_mlp":
        raw = yaml.safe_load((ROOT / "experiments" / "quickstart.yaml").read_text())
        return raw["network"], (64,), 10, raw["objective"]["readout"]
    raw = yaml.safe_load((ROOT / "experiments" / "dvs_gesture_plif_bptt.yaml").read_text())
    blocks = []
    for block in raw["network"]["blocks"]:
        block = {k: v for k, v in block.items() if k != "dropout"}
        if "pool" in block:
            block["pool"] = {"size": block["pool"], "kind": "avg"}
        if block:
            blocks.append(block)
    return {**raw["network"], "blocks": blocks}, (2, hw, hw), 11, raw["objective"]["readout"]


def make_batch(name: str, shape: tuple[int, ...], classes: int, T: int, B: int, device: str) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((T, B, *shape), generator=gen)
    if name != "digits_mlp":
        x = (x < 0.1).float()
    return x.to(device), torch.randint(0, classes, (B,), generator=gen).to(device)


def snnlab_case(net_name: str, rule: dict[str, Any], hw: int, device: str) -> tuple[Callable, Callable]:
    """(setup, step): setup builds the network and rule; step(batch) trains one iteration."""
    network, shape, classes, readout = network_config(net_name, hw)

    def setup() -> Callable[[tuple[Tensor, Tensor]], object]:
        torch.manual_seed(0)
        raw = {"name": "bench", "data": {"name": "digits"}, "network": network, "rule": rule}
        cfg = validate(raw)
        objective = Classification(readout=readout)
        net = build_network(cfg.network, shape, membrane_output=objective.membrane_output).to(device)
        train = TrainConfig(epochs=1, optimizer={"name": "adam", "lr": 1e-3}, scheduler={"name": "none"})
        trainer = RULES.builder(cfg.rule.name)(cfg.rule, net, objective, train).to(device)
        net.train()
        return lambda batch: trainer.train_step(net, batch)

    return setup, lambda: (shape, classes)


def spikingjelly_case(hw: int, device: str) -> Callable[[], Callable[[tuple[Tensor, Tensor]], object]]:
    """SpikingJelly's SLTT on the same conv network (average pooling, no dropout), one backward per step."""
    from spikingjelly.activation_based import functional, neuron, surrogate

    def lif() -> nn.Module:
        return neuron.SLTTLIFNode(
            tau=2.0, decay_input=True, v_reset=0.0, surrogate_function=surrogate.ATan(), detach_reset=True
        )

    def setup() -> Callable[[tuple[Tensor, Tensor]], object]:
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        channels = 2
        for _ in range(5):
            layers += [nn.Conv2d(channels, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128), lif(), nn.AvgPool2d(2)]
            channels = 128
        side = hw // 32
        layers += [nn.Flatten(), nn.Linear(128 * side * side, 512), lif(), nn.Linear(512, 11), lif()]
        net = nn.Sequential(*layers).to(device).train()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

        def step(batch: tuple[Tensor, Tensor]) -> None:
            x, y = batch
            optimizer.zero_grad()
            functional.reset_net(net)
            for x_t in x:
                (F.cross_entropy(net(x_t), y) / len(x)).backward()
            optimizer.step()

        return step

    return setup


def return_freed_memory() -> None:
    """Make freed memory leave the resident set, so that it measures live memory: glibc's dynamic mmap threshold
    would otherwise keep a freed tensor's pages in the heap and hide the next peak. Blocks of 64 KB and more are
    then mapped and unmapped each time."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD, fixed (which also turns the dynamic threshold off)
        libc.mallopt(-1, 64 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        print("  (not glibc: CPU memory may include freed memory kept by the allocator)")


def rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def measure(step: Callable, batch: tuple[Tensor, Tensor], device: str, warmup: int, reps: int) -> dict[str, Any]:
    """Times per iteration (ms) and the peak memory (MiB) above what was allocated before the timed iterations."""
    for _ in range(warmup):
        step(batch)
    gc.collect()
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(batch)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        peak = torch.cuda.max_memory_allocated() - before
    else:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        before = rss_kib("VmRSS") * 1024
        for _ in range(reps):
            start = time.perf_counter()
            step(batch)
            times.append((time.perf_counter() - start) * 1e3)
        peak = rss_kib("VmHWM") * 1024 - before
    return {"ms": statistics.median(times), "ms_min": min(times), "peak_mib": peak / 2**20}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for net_name in args.networks:
        hw = args.hw
        for T in args.T:
            cases: list[tuple[str, Callable]] = []
            for rule_name in args.rules:
                if rule_name == "spikingjelly-sltt":
                    if net_name != "digits_mlp":
                        try:
                            cases.append((rule_name, spikingjelly_case(hw, args.device)))
                        except ImportError as exc:
                            print(f"  spikingjelly: not installed ({exc})")
                    continue
                cases.append((rule_name, snnlab_case(net_name, RULE_CASES[rule_name], hw, args.device)[0]))
            _, shape, classes, _ = network_config(net_name, hw)
            batch = make_batch(net_name, shape, classes, T, args.batch, args.device)
            for rule_name, setup in cases:
                row = {"network": net_name, "rule": rule_name, "T": T, "batch": args.batch, "input": list(shape)}
                try:
                    step = setup()
                    row.update(measure(step, batch, args.device, args.warmup, args.reps))
                except Exception as exc:  # out of memory at large T, a library that cannot run
                    row["error"] = str(exc).splitlines()[0][:200]
                    if not isinstance(exc, torch.OutOfMemoryError):
                        traceback.print_exc()
                finally:
                    step = None
                    gc.collect()
                    if args.device == "cuda":
                        torch.cuda.empty_cache()
                rows.append(row)
                print(line(row, rows), flush=True)
    return rows


def line(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    head = f"{row['network']:>10} T={row['T']:<3} {row['rule']:<18}"
    if "error" in row:
        return f"{head} error: {row['error']}"
    base = next(
        (r for r in rows if r["rule"] == "bptt" and r["T"] == row["T"] and r["network"] == row["network"]), None
    )
    text = f"{head} {row['ms']:9.2f} ms {row['peak_mib']:9.1f} MiB"
    if base is not None and "error" not in base and base is not row:
        text += f"   x{row['ms'] / base['ms']:.2f} time, x{row['peak_mib'] / max(base['peak_mib'], 1e-9):.2f} memory"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--T", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--networks", nargs="+", default=["digits_mlp", "dvs_conv"], choices=["digits_mlp", "dvs_conv"])
    parser.add_argument("--rules", nargs="+", default=[*RULE_CASES, "spikingjelly-sltt"])
    parser.add_argument("--batch", type=int, default=None, help="default: 16 on CUDA (the paper's), 4 on the CPU")
    parser.add_argument("--hw", type=int, default=None, help="DVS frame side; default 128 on CUDA, 32 on the CPU")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch and Numba)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    args.batch = args.batch or (16 if cuda else 4)
    args.hw = args.hw or (128 if cuda else 32)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not cuda:
        return_freed_memory()
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(env))
    rows = run(args)
    if args.out is not None:
        args.out.write_text(
            json.dumps({"env": env, "args": {**vars(args), "out": str(args.out)}, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
