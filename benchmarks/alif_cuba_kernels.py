"""One ALIF layer and one CUBA-LIF layer, forward and forward+backward: snnlab's fused kernels against its torch loop,
and CUBA-LIF against snnTorch ``Synaptic`` and SpikingJelly's ``CUBALIFNode``, all measured in the same process run
with ``lif_kernels.py``'s method (timing, memory kept for backward, bandwidth; see its docstring) and output format,
one table per model.

The layers: x ``[T, 64, N/64]`` from ``randn``, threshold 1, soft reset, atan surrogate (alpha 2), loss
``spikes.sum()``.

* CUBA-LIF: i = 0.5 i + x, h = 0.5 v + i (``decay_input: false``: snnTorch's and SpikingJelly's form). SpikingJelly
  2.0's ``CUBALIFNode`` runs its step in a Python loop on every device and fires on h >= threshold.
* ALIF: h = 0.5 v + x, B = 1 + 1.8 a, a = rho a + (1 - rho) s with tau_a = 20 steps, half the neurons adapting
  (per-neuron beta_a, the LSNN layout). snnTorch and SpikingJelly have no ALIF.

    python benchmarks/alif_cuba_kernels.py --device cpu --T 32 --N 65536 --threads 2 --reps 15 --out cpu.json
    python benchmarks/alif_cuba_kernels.py --device cuda --out cuda.json     # T 8 32 128, N 65536 1048576
    python benchmarks/alif_cuba_kernels.py --summarize cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from lif_kernels import B, Case, add_layer_arguments, copy_bandwidth, measure, start_report, summarize
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # snnlab from this source tree

from snnlab.neurons import ALIF, CubaLIF  # noqa: E402

BETA, ALPHA = 0.5, 0.5
TAU_A, BETA_A = 20.0, 1.8


def snnlab_case(model: str, backend: str, N: int) -> Case:
    options = dict(tau=-1 / math.log(BETA), decay_input=False, reset="soft", surrogate="atan", backend=backend)
    if model == "alif":
        torch.manual_seed(0)  # the same adapting half in every backend's layer
        neuron = ALIF(tau_a=TAU_A, beta_a=BETA_A, adaptive_fraction=0.5, in_shape=(N // B,), **options)
    else:
        neuron = CubaLIF(tau_syn=-1 / math.log(ALPHA), **options)
    return Case(f"snnlab-{backend}", lambda x: neuron.to(x.device)(x)[0])


def snntorch_case(device: str) -> Case:
    import snntorch

    synaptic = snntorch.Synaptic(
        alpha=ALPHA, beta=BETA, reset_mechanism="subtract", reset_delay=False, spike_grad=snntorch.surrogate.atan(2)
    ).to(device)

    def run(x: Tensor) -> Tensor:
        syn, mem, spikes = torch.zeros_like(x[0]), torch.zeros_like(x[0]), []
        for x_t in x:
            spk, syn, mem = synaptic(x_t, syn, mem)
            spikes.append(spk)
        return torch.stack(spikes)

    return Case("snntorch", run, note=f"snntorch {snntorch.__version__}, Synaptic in a Python loop")


def spikingjelly_case(device: str) -> Case:
    import spikingjelly
    from spikingjelly.activation_based import functional, neuron, surrogate

    node = neuron.CUBALIFNode(
        c_decay=ALPHA, v_decay=BETA, v_threshold=1.0, v_reset=None, surrogate_function=surrogate.ATan(alpha=2.0)
    ).to(device)
    node.step_mode = "m"

    def run(x: Tensor) -> Tensor:
        functional.reset_net(node)
        return node(x)

    version = getattr(spikingjelly, "__version__", "2.0")
    return Case("spikingjelly", run, note=f"spikingjelly {version}, CUBALIFNode (its step in a Python loop)")


def build_cases(model: str, device: str, N: int, libraries: list[str]) -> list[Case]:
    fast = "triton" if device == "cuda" else "numba"
    builders: dict[str, Callable[[], Case]] = {
        "snnlab-torch": lambda: snnlab_case(model, "torch", N),
        "snnlab-fast": lambda: snnlab_case(model, fast, N),
    }
    if model == "cuba":
        builders.update(snntorch=lambda: snntorch_case(device), spikingjelly=lambda: spikingjelly_case(device))
    cases = []
    for name in libraries:
        if name not in builders:
            continue
        try:
            cases.append(builders[name]())
        except ImportError as exc:
            print(f"  {name}: not installed ({exc})")
    return cases


def summarize_models(report: dict) -> str:
    """``lif_kernels.summarize``'s table for each model."""
    parts = []
    for model in report["models"]:
        rows = [r for r in report["results"] if r["model"] == model]
        parts.append(f"== {model} ==\n" + summarize({**report, "results": rows}))
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=["alif", "cuba"], default=["alif", "cuba"])
    add_layer_arguments(parser, ["snnlab-torch", "snnlab-fast", "snntorch", "spikingjelly"])
    args = parser.parse_args()
    if args.summarize:
        print(summarize_models(json.loads(args.summarize.read_text())))
        return
    device = args.device
    sizes = args.N or ([65536, 2**20] if device == "cuda" else [65536])
    report = {**start_report(args), "models": args.models}
    if device == "cuda":
        report["copy_GBs"] = copy_bandwidth(args.reps)
        print(f"copy bandwidth: {report['copy_GBs']:.0f} GB/s")
    for N in sorted(sizes, reverse=True):  # the largest (the targets) first, in case the run is cut short
        for model in args.models:
            cases = build_cases(model, device, N, args.libraries)
            for T in args.T:
                for case in cases:
                    try:
                        row = {"model": model, **measure(case, T, N, device, args.reps)}
                    except Exception as exc:
                        report["errors"].append(f"{model} {case.name} T={T} N={N}: {exc!r}")
                        traceback.print_exc()
                        continue
                    report["results"].append(row)
                    if args.out:
                        args.out.write_text(json.dumps(report, indent=1))
                    print(f"{model:<5} T={T:>4} N={N:>8} {case.name:<16} fwd {row['fwd_ms']:9.3f} ms  fwd+bwd "
                          f"{row['fwdbwd_ms']:9.3f} ms  rate {row['rate']:.3f}", flush=True)  # fmt: skip
                    if device == "cuda":
                        torch.cuda.empty_cache()
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(summarize_models(report))


if __name__ == "__main__":
    main()
