"""One LIF layer, forward and forward+backward: time, memory kept for backward, and achieved bandwidth, for
snnlab's backends against the torch reference loop, snnTorch ``Leaky``, Norse ``LIFBox`` and SpikingJelly's
multi-step ``LIFNode`` (each of its CUDA implementations that loads), all measured in the same process run.

Every library runs the same layer: x ``[T, B, N/B]`` from ``randn``, h = 0.5 v + x, soft (subtract) reset,
threshold 1, atan surrogate (alpha 2; Norse: its SuperSpike), loss ``spikes.sum()``. SpikingJelly and Norse compute
h = 0.5 v + 0.5 x and get 2x, prepared outside the timed region. The spike rates are printed to check that all
cases agree (about 12% here).

GPU: CUDA events around each iteration, median of ``--reps`` after warm-up, L2 flushed between iterations.
CPU: minimum (and median) of ``--reps``. "kept" is the memory allocated after forward with the graph alive
minus the input and the spikes, per neuron-step (on the CPU: the storages autograd saves but the input's and
the spikes'); "holds x" says whether the graph keeps the input itself alive (in a network that input would
otherwise be freed, so it then costs its own size too). Bandwidth = the bytes that must move (fwd: read x,
write s = 8 B per neuron-step in float32; fwd+bwd: also the loss reading s, the backward reading x again and
writing dL/dx = 20 B) over the time, against a measured device-to-device copy (read + write).

    python benchmarks/lif_kernels.py --device cpu --T 32 --N 65536 --threads 2 --reps 15 --out cpu.json
    python benchmarks/lif_kernels.py --device cuda --sweep --out cuda.json     # T 8 32 128, N 65536 1048576
    python benchmarks/lif_kernels.py --summarize cuda.json
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # snnlab from this source tree

from snnlab.neurons import LIF  # noqa: E402

BETA = 0.5
B = 64
MUST_MOVE = {"fwd": 8, "fwdbwd": 20}  # bytes per neuron-step in float32, see the module docstring


@dataclass
class Case:
    """A library's LIF layer: ``run(x)`` returns the spikes for input current ``x`` (already scaled by ``scale``)."""

    name: str
    run: Callable[[Tensor], Tensor]
    scale: float = 1.0
    activate: Callable[[], None] = field(default=lambda: None)
    note: str = ""


def snnlab_case(backend: str) -> Case:
    neuron = LIF(tau=-1 / math.log(BETA), decay_input=False, reset="soft", surrogate="atan", backend=backend)
    return Case(f"snnlab-{backend}", lambda x: neuron(x)[0])


def snntorch_case(device: str) -> Case:
    import snntorch

    leaky = snntorch.Leaky(
        beta=BETA, reset_mechanism="subtract", reset_delay=False, spike_grad=snntorch.surrogate.atan(alpha=2)
    ).to(device)

    def run(x: Tensor) -> Tensor:
        mem, spikes = torch.zeros_like(x[0]), []
        for x_t in x:
            spk, mem = leaky(x_t, mem)
            spikes.append(spk)
        return torch.stack(spikes)

    return Case("snntorch", run, note=f"snntorch {snntorch.__version__}, Leaky in a Python loop")


def norse_case(device: str) -> Case:
    import norse
    from norse.torch.functional.lif_box import LIFBoxParameters

    def const(v: float) -> Tensor:
        return torch.as_tensor(v, device=device)

    options, note = {}, "subtract reset"
    try:
        from norse.torch.functional.reset import reset_subtract

        options["reset_method"] = reset_subtract
    except ImportError:
        note = "reset to 0 (no subtract reset in this Norse)"
    p = LIFBoxParameters(tau_mem_inv=const(500.0), v_leak=const(0.0), v_th=const(1.0), v_reset=const(0.0), **options)
    try:
        from norse.torch.module.lif_box import LIFBox

        layer = LIFBox(p, dt=1e-3)
        return Case("norse", lambda x: layer(x)[0], 2.0, note=f"norse {norse.__version__}, LIFBox, {note}")
    except ImportError:  # older Norse: its cell in a loop, which is what LIFBox does
        from norse.torch.module.lif_box import LIFBoxCell

        cell = LIFBoxCell(p, dt=1e-3)

        def run(x: Tensor) -> Tensor:
            state, spikes = None, []
            for x_t in x:
                z, state = cell(x_t, state)
                spikes.append(z)
            return torch.stack(spikes)

        return Case("norse", run, 2.0, note=f"norse {norse.__version__}, LIFBoxCell in a loop, {note}")


def spikingjelly_cases(device: str) -> list[Case]:
    """SpikingJelly 2.0's LIFNode; on CUDA one case per implementation it can load (native CUDA, Triton)."""
    import spikingjelly
    from spikingjelly.activation_based import functional, neuron, surrogate

    node = neuron.LIFNode(
        tau=2.0, decay_input=True, v_reset=None, surrogate_function=surrogate.ATan(alpha=2.0), step_mode="m"
    ).to(device)

    def run(x: Tensor) -> Tensor:
        functional.reset_net(node)
        return node(x)

    version = getattr(spikingjelly, "__version__", "2.0")
    if device == "cpu":
        return [Case("spikingjelly", run, scale=2.0, note=f"spikingjelly {version}, its CPU path")]
    from spikingjelly._ops import lif as sj_lif

    def select(impl: str) -> Callable[[], None]:
        def activate() -> None:  # what SJ_LIF_CUDA_IMPLEMENTATION=impl does at import, switched in place
            sj_lif._selection._requested = impl
            sj_lif._selection._selections.clear()
            sj_lif._selection._compiled_selections.clear()

        return activate

    cases = []
    for impl in ("cuda", "triton"):
        case = Case(f"spikingjelly-{impl}", run, 2.0, select(impl), f"spikingjelly {version}, {impl}")
        try:
            case.activate()
            run(torch.randn(2, 4, 8, device=device))
            cases.append(case)
        except Exception as exc:  # the native extension is usually not built
            print(f"  spikingjelly {impl}: not available ({str(exc).splitlines()[0][:120]})")
    return cases


def build_cases(device: str, libraries: list[str]) -> list[Case]:
    builders: dict[str, Callable[[], list[Case]]] = {
        "snnlab-torch": lambda: [snnlab_case("torch")],
        "snnlab-fast": lambda: [snnlab_case("triton" if device == "cuda" else "numba")],
        "snntorch": lambda: [snntorch_case(device)],
        "norse": lambda: [norse_case(device)],
        "spikingjelly": lambda: spikingjelly_cases(device),
    }
    cases = []
    for name in libraries:
        try:
            cases.extend(builders[name]())
        except ImportError as exc:
            print(f"  {name}: not installed ({exc})")
    return cases


# --- timing ----------------------------------------------------------------------------------------------


@functools.cache
def _flush_buffer() -> Tensor:
    return torch.empty(256 * 2**20, dtype=torch.int8, device="cuda")


def time_cuda(fn: Callable[[], object], reps: int, warmup: int = 3) -> list[float]:
    """Milliseconds per call from CUDA events, the L2 cache flushed before each call."""
    flush = _flush_buffer()
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for start, end in events:
        flush.zero_()
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in events]


def cuda_graph(fn: Callable[[], object]) -> Callable[[], object] | None:
    """``fn`` captured in a CUDA graph, whose replays time the GPU's own work without Python's launch overhead
    (which dominates a single layer's eager time up to about N T = 32M); None where it cannot be captured."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph.replay
    except Exception as exc:  # a library whose layer cannot be captured keeps its eager figure only
        print(f"  (not capturable in a CUDA graph: {str(exc).splitlines()[0][:100]})", flush=True)
        torch.cuda.synchronize()
        return None


def time_cpu(fn: Callable[[], object], reps: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def copy_bandwidth(reps: int) -> float:
    """GB/s of a device-to-device copy of 1 GiB, counting bytes read plus bytes written."""
    x = torch.randn(2**28, device="cuda")
    y = torch.empty_like(x)
    ms = statistics.median(time_cuda(lambda: y.copy_(x), reps))
    return 2 * x.numel() * x.element_size() / ms / 1e6


def kept_for_backward(case: Case, x_leaf: Tensor) -> dict[str, float | bool]:
    """Bytes the graph keeps after forward besides the input and the spikes, whether it keeps the input alive,
    and the peak memory of forward+backward above the input; all measured with the allocator's counters."""
    torch.cuda.synchronize()
    x = x_leaf.clone()  # a non-leaf input, as a layer's output is
    x_bytes = x.numel() * x.element_size()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    spikes = case.run(x)
    torch.cuda.synchronize()
    after = torch.cuda.memory_allocated()
    del x
    holds_input = after - torch.cuda.memory_allocated() < x_bytes / 2
    torch.autograd.grad(spikes.sum(), x_leaf)
    torch.cuda.synchronize()
    kept = after - before - spikes.numel() * spikes.element_size()
    return {"kept": kept, "holds_x": holds_input, "peak": torch.cuda.max_memory_allocated() - before + x_bytes}


def saved_for_backward(case: Case, x_leaf: Tensor) -> dict[str, float | bool]:
    """On the CPU, where the allocator keeps no counters: the bytes of the distinct storages autograd saves for
    backward, except the input's and the spikes', and whether the input's is among them."""
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = x_leaf.clone()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        spikes = case.run(x)
    input_ptr, output_ptr = x.untyped_storage().data_ptr(), spikes.untyped_storage().data_ptr()
    kept = sum(n for ptr, n in storages.items() if ptr not in (input_ptr, output_ptr))
    return {"kept": kept, "holds_x": input_ptr in storages}


def measure(case: Case, T: int, N: int, device: str, reps: int, memory: bool = True) -> dict[str, object]:
    # drawn on the CPU: a failed CUDA-graph capture of another library must not leave CUDA's generator unusable
    x = (torch.randn(T, B, N // B, generator=torch.Generator().manual_seed(0)) * case.scale).to(device)
    x.requires_grad_()
    case.activate()
    timer = time_cuda if device == "cuda" else time_cpu

    def forward() -> Tensor:
        with torch.no_grad():
            return case.run(x)

    def forward_backward() -> Tensor:
        return torch.autograd.grad(case.run(x).sum(), x)[0]

    rate = forward().float().mean().item()
    fwd, fwdbwd = timer(forward, reps), timer(forward_backward, reps)
    pick = statistics.median if device == "cuda" else min
    row: dict[str, object] = {
        "library": case.name, "T": T, "N": N, "B": B, "rate": rate, "note": case.note,
        "fwd_ms": pick(fwd), "fwdbwd_ms": pick(fwdbwd),
        "fwd_ms_median": statistics.median(fwd), "fwdbwd_ms_median": statistics.median(fwdbwd),
        "fwd_ms_max": max(fwd), "fwdbwd_ms_max": max(fwdbwd), "reps": reps,
    }  # fmt: skip
    if device == "cuda":
        for mode, fn in (("fwd", forward), ("fwdbwd", forward_backward)):
            replay = cuda_graph(fn)
            row[f"{mode}_graph_ms"] = statistics.median(timer(replay, reps)) if replay else None
    for mode in MUST_MOVE:
        ms = row.get(f"{mode}_graph_ms") or row[f"{mode}_ms"]
        row[f"{mode}_GBs"] = MUST_MOVE[mode] * T * N / ms / 1e6
    if memory:
        kept = kept_for_backward(case, x) if device == "cuda" else saved_for_backward(case, x)
        row["kept_B"] = kept["kept"] / (T * N)
        row["holds_x"] = kept["holds_x"]
        if "peak" in kept:
            row["peak_MB"] = kept["peak"] / 2**20
    return row


# --- the Triton configuration sweep ----------------------------------------------------------------------


def sweep_triton(reps: int, T: int = 32, N: int = 2**20) -> dict[str, int]:
    """Time forward+backward for a few (BLOCK, NUM_WARPS, K) and keep the fastest for the rest of the run."""
    from snnlab.kernels import triton_common

    configs = [(256, 4, 8), (512, 4, 8), (512, 8, 8), (1024, 8, 8), (256, 4, 16), (128, 4, 8)]
    results = []
    for block, warps, k in configs:
        triton_common.BLOCK, triton_common.NUM_WARPS, triton_common.K = block, warps, k
        try:
            row = measure(snnlab_case("triton"), T, N, "cuda", reps, memory=False)
            results.append((row.get("fwdbwd_graph_ms") or row["fwdbwd_ms"], row["fwd_ms"], block, warps, k))
            print(f"  sweep BLOCK={block} NUM_WARPS={warps} K={k}: fwd {row['fwd_ms']:.3f} ms, "
                  f"fwd+bwd {row['fwdbwd_ms']:.3f} ms")  # fmt: skip
        except Exception as exc:
            print(f"  sweep BLOCK={block} NUM_WARPS={warps} K={k}: failed ({exc})")
    _, _, block, warps, k = min(results) if results else (0, 0, *configs[0])
    triton_common.BLOCK, triton_common.NUM_WARPS, triton_common.K = block, warps, k
    print(f"  using BLOCK={block} NUM_WARPS={warps} K={k}")
    return {"BLOCK": block, "NUM_WARPS": warps, "K": k, "sweep": [list(r) for r in results]}


# --- report ----------------------------------------------------------------------------------------------


def summarize(report: dict) -> str:
    """A compact table per (T, N), with each library's time relative to snnlab's fused backend."""
    rows = report["results"]
    gpu = report["device_kind"] == "cuda"
    fast = "snnlab-triton" if gpu else "snnlab-numba"
    lines = [f"{report['device']}  ({report['date']}, torch {report['torch']}, {report.get('timing', '')})"]
    if gpu:
        lines.append(f"copy bandwidth {report['copy_GBs']:.0f} GB/s; triton config {report.get('triton_config')}")
    if gpu:
        lines.append("eager: Python-launched, as a loop calls it; graph: CUDA-graph replays, the GPU's own time. "
                     "x fast and %bw use the graph time where there is one")  # fmt: skip
    head = f"{'T':>4} {'N':>8} {'library':<20} {'fwd ms':>9} {'f+b ms':>9}"
    head += f" {'fwd graph':>9} {'f+b graph':>9}" if gpu else ""
    head += f" {'x fast':>7} {'rate':>6} {'kept B':>7} {'holds x':>7}" + (f" {'f+b %bw':>7}" if gpu else "")
    lines.append(head)

    def fwdbwd(r: dict) -> float:
        return r.get("fwdbwd_graph_ms") or r["fwdbwd_ms"]

    for T, N in sorted({(r["T"], r["N"]) for r in rows}):
        group = [r for r in rows if r["T"] == T and r["N"] == N]
        ref = next((r for r in group if r["library"] == fast), None)
        for r in group:
            ratio = fwdbwd(r) / fwdbwd(ref) if ref else float("nan")
            line = f"{T:>4} {N:>8} {r['library']:<20} {r['fwd_ms']:>9.3f} {r['fwdbwd_ms']:>9.3f}"
            if gpu:
                line += "".join(
                    f" {r[k]:>9.3f}" if r.get(k) else f" {'-':>9}" for k in ("fwd_graph_ms", "fwdbwd_graph_ms")
                )
            line += f" {ratio:>7.2f} {r['rate']:>6.3f}"
            if "kept_B" in r:
                line += f" {r['kept_B']:>7.2f} {'yes' if r['holds_x'] else 'no':>7}"
            if gpu:
                line += f" {r['fwdbwd_GBs'] / report['copy_GBs'] * 100:>6.0f}%"
            lines.append(line)
    for e in report.get("errors", []):
        lines.append(f"error: {e}")
    return "\n".join(lines)


def add_layer_arguments(parser: argparse.ArgumentParser, libraries: list[str]) -> None:
    """The options of a one-layer kernel benchmark (this one and ``alif_cuba_kernels.py``)."""
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--T", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--N", type=int, nargs="+", help="neurons per step (B x features); GPU default 65536 1048576")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch and numba)")
    parser.add_argument("--libraries", nargs="+", default=libraries)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--summarize", type=Path, metavar="JSON", help="only print the table(s) of a saved run")


def start_report(args: argparse.Namespace) -> dict:
    """Set torch's and Numba's threads to ``--threads``; the report's header (command, date, device, timing)."""
    torch.set_num_threads(args.threads)
    try:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    device = args.device
    return {
        "command": " ".join(["python", *sys.argv]), "date": datetime.date.today().isoformat(),
        "device_kind": device, "torch": torch.__version__, "python": platform.python_version(),
        "device": torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or 'cpu'}, "
        f"{args.threads} threads", "timing": "median of CUDA events" if device == "cuda" else f"min of {args.reps}",
        "results": [], "errors": [],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_layer_arguments(parser, ["snnlab-torch", "snnlab-fast", "snntorch", "norse", "spikingjelly"])
    parser.add_argument("--sweep", action="store_true", help="first pick the fastest Triton configuration")
    args = parser.parse_args()
    if args.summarize:
        print(summarize(json.loads(args.summarize.read_text())))
        return
    device = args.device
    sizes = args.N or ([65536, 2**20] if device == "cuda" else [65536])
    report = start_report(args)
    try:
        import triton

        report["triton"] = triton.__version__
    except ImportError:
        pass
    if device == "cuda":
        report["copy_GBs"] = copy_bandwidth(args.reps)
        print(f"copy bandwidth: {report['copy_GBs']:.0f} GB/s")
        if args.sweep:
            report["triton_config"] = sweep_triton(args.reps)
    cases = build_cases(device, args.libraries)
    for N in sorted(sizes, reverse=True):  # the largest (the targets) first, in case the run is cut short
        for T in args.T:
            for case in cases:
                try:
                    row = measure(case, T, N, device, args.reps)
                except Exception as exc:
                    report["errors"].append(f"{case.name} T={T} N={N}: {exc!r}")
                    traceback.print_exc()
                    continue
                report["results"].append(row)
                if args.out:
                    args.out.write_text(json.dumps(report, indent=1))
                print(f"T={T:>4} N={N:>8} {case.name:<20} fwd {row['fwd_ms']:9.3f} ms  fwd+bwd "
                      f"{row['fwdbwd_ms']:9.3f} ms  rate {row['rate']:.3f}", flush=True)  # fmt: skip
                if device == "cuda":
                    torch.cuda.empty_cache()
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(summarize(report))


if __name__ == "__main__":
    main()
