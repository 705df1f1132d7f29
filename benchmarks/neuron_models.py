"""The papers' new neuron models against LIF on the data we have, each row beside the paper's own claim
(METHODS.md Part A 2, 3, 5), and UltraLIF's fused kernel against its torch path; writes its section of
``benchmarks/RESULTS.md``.

* UltraLIF, UltraPLIF, UltraDLIF against LIF with a surrogate at T = 1 and T = 4, on digits (Poisson-coded with
  gain 0.5, the paper's setup: one hidden layer of 64) and on the generated Poisson-train task, and at depth 2 at
  T = 1 (the paper: a 2-layer LIF collapses where UltraDLIF holds).
* A normalisation-free E-I network of 6 hidden blocks on digits, against the same depth of plain LIF without and
  with batch norm.
* The probabilistic meta neuron against LIF, each with and without learnable intrinsic parameters, on the
  Poisson-train task, and the SNN-LZC classifier on the meta network's hidden spike trains.
* UltraLIF's fused kernel (Numba on the CPU, Triton on CUDA) against its torch loop and, on the GPU, against the
  paper's formulation in plain torch (``torch.logsumexp`` of the stacked terms).

    python benchmarks/neuron_models.py --seeds 0 1 2              # everything, into RESULTS.md
    python benchmarks/neuron_models.py --only ultra --epochs 5    # one part, quick
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lif_kernels import time_cpu, time_cuda  # noqa: E402
from seeded_runs import Row, header, mean_std, run_rows, table, train, write_section  # noqa: E402

LIF = "network.neuron={model: lif, tau: 2.0, decay_input: false, reset: soft, surrogate: {name: atan, alpha: 2.0}}"
"""The surrogate-gradient baseline of the UltraLIF rows (with T = 1 its leak never acts)."""

POISSON_TASK = "data={name: poisson_trains, time_steps: %d, dt_ms: 16.0, batch_size: 128}"
"""The generated Poisson-train task coarsened to T bins of 16 ms (the widest bin its 60 Hz class allows)."""

ULTRA_CLAIM = "MNIST T=1: UltraDLIF 95.67 vs best baseline 95.58 (+0.09); largest gains at T=1 (SHD +11.2)"
DEPTH_CLAIM = "SHD T=1, 2 layers: LIF 19.48, UltraDLIF 50.84"


OUT = "{linear: %d, neuron: {model: nonspiking, activation: identity}}"
"""The output layer (of as many units as classes) of every UltraLIF row: its current averaged over T (the paper's fc2 readout), for LIF too."""


def ultra_rows() -> list[Row]:
    """UltraLIF family against LIF on digits and the Poisson task at T = 1 and 4, and at depth 2 at T = 1; digits
    directly coded as well, since Poisson coding at gain 0.5 caps every model near 59% at T = 1 on digits."""
    neurons = {
        "LIF (atan surrogate)": ("digits_ultralif", (LIF,)),
        "UltraLIF": ("digits_ultralif", ()),
        "UltraPLIF": ("digits_ultralif", ("network.neuron.learn_tau=true",)),
        "UltraDLIF": ("digits_ultradlif", ()),
    }

    def blocks(hidden: int, classes: int = 10) -> str:
        return f"network.blocks=[{'{linear: 64}, ' * hidden}{OUT % classes}]"

    shallow, deep = blocks(1), blocks(2)
    tasks = {
        "digits (Poisson, gain 0.5)": lambda T: (f"data.time_steps={T}", shallow),
        "Poisson trains": lambda T: (POISSON_TASK % T, blocks(1, classes=5)),
    }
    rows = []
    for task, data in tasks.items():
        for T in (1, 4):
            for name, (experiment, neuron) in neurons.items():
                rows.append(Row(f"{task}, T={T}: {name}", experiment, (*data(T), *neuron), ULTRA_CLAIM))
    for coding, encoder in (("Poisson, gain 0.5", ()), ("direct", ("data.encoder=direct",))):
        for depth, blocks in (("1 hidden", shallow), ("depth 2", deep)):
            if coding.startswith("Poisson") and depth == "1 hidden":
                continue  # the T=1 row above
            for name in ("LIF (atan surrogate)", "UltraLIF", "UltraDLIF"):
                experiment, neuron = neurons[name]
                overrides = ("data.time_steps=1", *encoder, blocks, *neuron)
                claim = DEPTH_CLAIM if depth == "depth 2" else ULTRA_CLAIM
                rows.append(Row(f"digits ({coding}), T=1, {depth}: {name}", experiment, overrides, claim))
    return rows


def ei_rows() -> list[Row]:
    """Six hidden blocks on digits: E-I circuits without normalisation, plain LIF without and with batch norm."""
    claim = "deep SNNs train without BN: CIFAR-10 92.05, DVS-Gesture 94.86 (no BN)"
    lif = "{linear: 128%s}"
    out = "{linear: 10, neuron: {model: nonspiking, activation: identity}}"  # the E-I output's readout
    plain = "network.blocks=[" + ", ".join([lif % ""] * 6 + [out]) + "]"
    normed = "network.blocks=[" + ", ".join([lif % ", norm: batch"] * 6 + [out]) + "]"
    return [
        Row("6 hidden E-I blocks, no norm", "digits_ei", (), claim),
        Row("6 hidden LIF blocks, no norm", "digits_ei", (plain,), "collapses without BN (the paper's premise)"),
        Row("6 hidden LIF blocks, batch norm", "digits_ei", (normed,), "the usual recipe"),
    ]


def meta_rows() -> list[Row]:
    """Meta neuron and LIF, each with and without learnable intrinsic parameters, on the Poisson-train task."""
    fixed_meta = ("network.neuron.learn_intrinsic=false", "network.blocks.0.meta_linear.learn_intrinsic=false")
    learn_lif = ("network.neuron.learn_tau=true", "network.neuron.learn_threshold=true")
    return [
        Row("meta neuron, learnable intrinsic", "poisson_meta", (), "learning intrinsic params: up to +8.50 pp"),
        Row("meta neuron, fixed intrinsic", "poisson_meta", fixed_meta, ""),
        Row("LIF, learnable tau and threshold", "poisson_lif", learn_lif, "learning intrinsic params: up to +13.50 pp"),
        Row("LIF, fixed", "poisson_lif", (), ""),
    ]


def lzc_accuracy(seeds: Sequence[int], overrides: Sequence[str]) -> str:
    """The SNN-LZC classifier on the hidden spike trains of the trained meta network, per seed."""
    from snnlab.lzc import lzc_run_accuracy

    accuracies = []
    with tempfile.TemporaryDirectory() as root:
        for seed in seeds:
            accuracies.append(100 * lzc_run_accuracy(train("poisson_meta", overrides, seed, root).run_dir))
    return mean_std(accuracies)


def ultralif_kernel_times(device: str, T_values: Sequence[int], N: int, reps: int) -> str:
    """Forward+backward milliseconds of one UltraLIF layer: fused backend, torch loop, and (GPU) the paper's form."""
    from snnlab.neurons.ultralif import UltraLIF

    timer: Callable[..., list[float]] = time_cuda if device == "cuda" else time_cpu
    fused = "triton" if device == "cuda" else "numba"

    def paper(x_seq: torch.Tensor) -> torch.Tensor:
        """UltraLIF as the paper's code writes it: logsumexp of the stacked terms, sigmoid fire, soft reset."""
        v, eps, out = torch.zeros_like(x_seq[0]), 1.0, []
        for x in x_seq:
            h = eps * torch.logsumexp(torch.stack([(v + math.log(0.9)) / eps, x / eps]), dim=0)
            s = torch.sigmoid((h - 1.0) / eps)
            v = h * (1 - s)
            out.append(s)
        return torch.stack(out)

    lines = ["| T | snnlab fused ms | snnlab torch loop ms | paper's form ms | loop / fused |", "|---|---|---|---|---|"]
    for T in T_values:
        x = torch.randn(T, 64, N // 64, device=device, requires_grad=True)
        times = {}
        cases = {"fused": UltraLIF(backend=fused), "loop": UltraLIF(backend="torch")}
        for name, layer in cases.items():
            layer.to(device)
            times[name] = min(timer(lambda layer=layer, x=x: layer(x)[0].sum().backward(), reps))
        times["paper"] = min(timer(lambda x=x: paper(x).sum().backward(), reps)) if device == "cuda" else math.nan
        paper_ms = f"{times['paper']:.3f}" if device == "cuda" else "not run (GPU only)"
        lines.append(
            f"| {T} | {times['fused']:.3f} | {times['loop']:.3f} | {paper_ms} | {times['loop'] / times['fused']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="override every experiment's epochs (quick checks)")
    parser.add_argument("--only", choices=["ultra", "ei", "meta", "kernels"], nargs="+")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing RESULTS.md")
    args = parser.parse_args()
    epochs = (f"train.epochs={args.epochs}",) if args.epochs else ()

    def runs(rows: list[Row]) -> str:
        return table(run_rows([Row(r.label, r.experiment, (*r.overrides, *epochs), r.claim) for r in rows], args.seeds))

    def meta() -> str:
        lzc = lzc_accuracy(args.seeds, epochs)
        return f"{runs(meta_rows())}\n\nSNN-LZC classifier on the meta network's hidden trains (claim: up to 99.50): {lzc} %"

    def kernels() -> str:
        cpu = ultralif_kernel_times("cpu", (1, 4, 32), 65536, args.reps)
        gpu = ultralif_kernel_times("cuda", (1, 4, 32), 2**20, args.reps) if torch.cuda.is_available() else None
        return f"CPU:\n\n{cpu}\n\nGPU:\n\n{gpu or 'not measured (no GPU in this run).'}"

    sections = {
        "ultra": (
            "UltraLIF family against LIF (1 hidden layer of 64 unless said, Adam, BPTT)",
            lambda: runs(ultra_rows()),
        ),
        "ei": ("E-I circuits without normalisation: 6 hidden blocks on digits", lambda: runs(ei_rows())),
        "meta": ("Probabilistic meta neuron against LIF on the Poisson-train task", meta),
        "kernels": ("UltraLIF kernel, forward+backward of one layer [T, 64, N/64]", kernels),
    }
    for part in args.only or sections:
        title, measure = sections[part]
        text = f"{header(sys.argv, args.seeds)}\n\n{measure()}"
        if args.no_write:
            print(f"## {title}\n\n{text}")
        else:
            write_section(f"neuron_models_{part}", f"Issue 13: {title}", text)


if __name__ == "__main__":
    main()
