"""One training step (forward, backward, Adam) of whole networks: snnlab unfused and with fused blocks, NCHW and
channels_last, float32 and bf16 autocast, against SpikingJelly 2.0 (each CUDA implementation of its neurons that
loads) and snnTorch; all in one process run, on random event frames.

Networks:

* ``dvs``: the DVS-Gesture PLIF network of ``experiments/dvs_gesture_plif_bptt.yaml`` (five conv128-BN-PLIF-maxpool
  blocks, dropout, FC512, FC11; T = 20, B = 16, 2 x 128 x 128 frames with 10% of the pixels on). SpikingJelly runs
  its own ``DVSGestureNet`` (the same blocks, FC110 and a 10:1 voting layer) with ``ParametricLIFNode`` (tau 2, hard
  reset to 0, detached reset, ATan) in multi-step mode; snnTorch ``Leaky(learn_beta=True)`` with ``nn.Conv2d``,
  ``nn.BatchNorm2d`` (statistics per step, its idiom) and ``nn.MaxPool2d`` in a loop over T.
* ``mlp``: an SHD-style MLP 700-256-256-20 with batch norm in the hidden blocks (T = 100, B = 256, inputs with 10%
  on): LIF tau 10 (Euler, SpikingJelly's update), soft reset, no input decay, ATan; the same in SpikingJelly
  (``LIFNode``) and snnTorch.

Every case reads the output by spike count (cross-entropy of the spikes averaged over T) and runs a bare step:
``zero_grad``, forward, loss, ``backward``, ``Adam.step`` (no NaN checks, no host synchronisation). snnlab's rows
run its network as built from the YAML with ``network.fuse_blocks`` off or auto; "fused" says how many blocks ran
fused (0 where no backend has the fused op: the CPU). bf16: ``torch.autocast`` around forward and loss, parameters
and Adam in float32, as SpikingJelly's and the issue's figures were taken.

Timing (CUDA): CUDA events around each step after ``--warmup`` steps, the
median of ``--reps``; peak memory is ``torch.cuda.max_memory_allocated`` over the timed steps (weights, Adam state
and the batch included). On the CPU the median of host time, no memory. ``--results FILE`` writes the tables as a
section of FILE (``benchmarks/RESULTS.md``) between this benchmark's markers.

    python benchmarks/network_step.py --device cuda --out cuda.json --results benchmarks/RESULTS.md
    python benchmarks/network_step.py --device cpu --small --reps 1 --warmup 0          # a smoke test, seconds
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # snnlab from this source tree
sys.path.insert(0, str(ROOT / "benchmarks"))

from seeded_runs import write_section  # noqa: E402

from snnlab.builder import build_network  # noqa: E402
from snnlab.config import validate  # noqa: E402

Step = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Shape:
    """A network's sizes: T, B, the input per step, hidden widths (channels for ``dvs``) and classes."""

    T: int
    B: int
    inputs: tuple[int, ...]
    hidden: int
    classes: int


SHAPES = {
    ("dvs", False): Shape(20, 16, (2, 128, 128), 128, 11),
    ("mlp", False): Shape(100, 256, (700,), 256, 20),
    ("dvs", True): Shape(2, 2, (2, 32, 32), 8, 11),
    ("mlp", True): Shape(4, 4, (70,), 32, 20),
}


@dataclass
class Case:
    """One row: ``build()`` returns the step; ``layout`` and ``precision`` say how it is fed and run."""

    network: str
    library: str
    variant: str
    build: Callable[[], tuple[Step, nn.Module]]
    channels_last: bool = False
    bf16: bool = False
    activate: Callable[[], None] = lambda: None


def batch(shape: Shape, device: str, channels_last: bool) -> tuple[Tensor, Tensor]:
    """Random event frames ``[T, B, ...]`` (10% on; per sample channels_last when asked) and labels."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand((shape.T * shape.B, *shape.inputs), generator=gen) < 0.1).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, shape.classes, (shape.B,), generator=gen)
    return x.to(device).unflatten(0, (shape.T, shape.B)), y.to(device)


def adam_step(model: nn.Module, forward: Callable[[Tensor], Tensor], bf16: bool, device: str) -> Step:
    """A bare training step: the loss is the cross-entropy of ``forward(x)`` (spikes ``[T, B, classes]``) averaged
    over T."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x: Tensor, y: Tensor) -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(x).float().mean(0), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


# --- snnlab ---------------------------------------------------------------------------------------------


def snnlab_network(name: str, shape: Shape) -> dict[str, Any]:
    """The ``network`` section: the experiment's for ``dvs`` (widths from ``shape``), the MLP's for ``mlp``."""
    if name == "dvs":
        raw = yaml.safe_load((ROOT / "experiments" / "dvs_gesture_plif_bptt.yaml").read_text())["network"]
        for block in raw["blocks"]:
            if "conv" in block:
                block["conv"]["out_channels"] = shape.hidden
        return raw
    neuron = {"model": "lif", "tau": 10.0, "discretization": "euler", "reset": "soft", "decay_input": False}
    blocks = [{"linear": shape.hidden, "norm": "batch"}, {"linear": shape.hidden, "norm": "batch"}]
    return {"neuron": {**neuron, "surrogate": "atan"}, "blocks": [*blocks, {"linear": shape.classes}]}


def snnlab_case(name: str, shape: Shape, device: str, fuse: bool, channels_last: bool, bf16: bool) -> Case:
    def build() -> tuple[Step, nn.Module]:
        torch.manual_seed(0)
        network = {**snnlab_network(name, shape), "fuse_blocks": "auto" if fuse else "off"}
        cfg = validate({"name": "bench", "data": {"name": "digits"}, "network": network})
        net = build_network(cfg.network, shape.inputs).to(device).train()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        return adam_step(net, lambda x: net(x)[0], bf16, device), net

    variant = f"{'fused' if fuse else 'unfused'}"
    return Case(name, "snnlab", variant, build, channels_last, bf16)


def fused_blocks(net: nn.Module, x: Tensor, bf16: bool) -> int | None:
    """How many of an snnlab network's blocks ran fused on ``x`` (no current in their trace); None for others."""
    if not hasattr(net, "trace"):
        return None
    with torch.no_grad(), torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
        return sum(t.current is None for t in net.trace(x).blocks if hasattr(t, "current"))


# --- SpikingJelly and snnTorch --------------------------------------------------------------------------


def spikingjelly_cases(name: str, shape: Shape, device: str, channels_last: bool, bf16: bool) -> list[Case]:
    """SpikingJelly 2.0's network; on CUDA one case per implementation of its neurons that loads."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def build() -> tuple[Step, nn.Module]:
        torch.manual_seed(0)
        if name == "dvs":
            from spikingjelly.activation_based.model.parametric_lif_net import DVSGestureNet

            options = dict(surrogate_function=surrogate.ATan(), detach_reset=True, v_reset=0.0)
            net = DVSGestureNet(shape.hidden, neuron.ParametricLIFNode, **options)
            if shape.inputs[1] != 128:  # the smoke size: the classifier's input follows the maps
                first = next(i for i, m in enumerate(net.conv_fc) if isinstance(m, nn.Linear))
                net.conv_fc[first] = layer.Linear(shape.hidden * (shape.inputs[1] // 32) ** 2, 512)
        else:

            def lif() -> nn.Module:
                return neuron.LIFNode(tau=10.0, decay_input=False, v_reset=None, surrogate_function=surrogate.ATan())

            w, c = shape.hidden, shape.classes
            net = nn.Sequential(
                layer.Linear(shape.inputs[0], w), layer.BatchNorm1d(w), lif(), layer.Linear(w, w),
                layer.BatchNorm1d(w), lif(), layer.Linear(w, c), lif(),
            )  # fmt: skip
        functional.set_step_mode(net, "m")
        net = net.to(device).train()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)

        def forward(x: Tensor) -> Tensor:  # (DVSGestureNet votes its 110 outputs into 11 itself)
            functional.reset_net(net)
            return net(x)

        return adam_step(net, forward, bf16, device), net

    if device != "cuda":
        return [Case(name, "spikingjelly", "torch", build, channels_last, bf16)]
    from spikingjelly._ops import lif as sj_lif
    from spikingjelly._ops import plif as sj_plif

    def select(impl: str) -> Callable[[], None]:
        def activate() -> None:  # what SJ_{LIF,PLIF}_CUDA_IMPLEMENTATION=impl does at import, switched in place
            for ops in (sj_lif, sj_plif):
                ops._selection._requested = impl
                ops._selection._selections.clear()
                ops._selection._compiled_selections.clear()

        return activate

    return [Case(name, "spikingjelly", impl, build, channels_last, bf16, select(impl)) for impl in ("cuda", "triton")]


def snntorch_case(name: str, shape: Shape, device: str) -> Case:
    """snnTorch: its layers in a loop over T (batch norm per step)."""
    import snntorch
    from snntorch import surrogate

    def build() -> tuple[Step, nn.Module]:
        torch.manual_seed(0)
        grad = surrogate.atan(alpha=2.0)
        stages: list[tuple[nn.Module, nn.Module, nn.Module]] = []  # (synapse + norm, neuron, post)
        if name == "dvs":
            channels, side = shape.inputs[0], shape.inputs[1]
            for _ in range(5):
                conv = nn.Sequential(
                    nn.Conv2d(channels, shape.hidden, 3, padding=1, bias=False), nn.BatchNorm2d(shape.hidden)
                )
                neuron = snntorch.Leaky(
                    beta=0.5, learn_beta=True, reset_mechanism="zero", spike_grad=grad, reset_delay=False
                )
                stages.append((conv, neuron, nn.MaxPool2d(2)))
                channels, side = shape.hidden, side // 2
            features = [shape.hidden * side * side, 512, shape.classes]
            norms = [nn.Identity(), nn.Identity()]
        else:
            features = [shape.inputs[0], shape.hidden, shape.hidden, shape.classes]
            norms = [nn.BatchNorm1d(shape.hidden), nn.BatchNorm1d(shape.hidden), nn.Identity()]
        for i, (a, b) in enumerate(zip(features, features[1:])):
            neuron = snntorch.Leaky(beta=0.9, reset_mechanism="subtract", spike_grad=grad, reset_delay=False)
            flatten = nn.Flatten() if i == 0 and name == "dvs" else nn.Identity()
            stages.append((nn.Sequential(flatten, nn.Linear(a, b), norms[i]), neuron, nn.Identity()))
        model = nn.ModuleList(nn.ModuleList(stage) for stage in stages).to(device).train()

        def forward(x: Tensor) -> Tensor:
            mems: list[Any] = [None] * len(model)
            outputs = []
            for x_t in x:
                h = x_t
                for i, (synapse, neuron, post) in enumerate(model):
                    current = synapse(h)
                    mems[i] = torch.zeros_like(current) if mems[i] is None else mems[i]
                    h, mems[i] = neuron(current, mems[i])
                    h = post(h)
                outputs.append(h)
            return torch.stack(outputs)

        return adam_step(model, forward, False, device), model

    return Case(name, "snntorch", "loop", build)


# --- measuring ------------------------------------------------------------------------------------------


def build_cases(args: argparse.Namespace) -> list[Case]:
    cases = []
    for name in args.networks:
        shape = SHAPES[name, args.small]
        layouts = [layout == "channels_last" for layout in args.layouts] if name == "dvs" else [False]
        for channels_last in layouts:
            for bf16 in [precision == "bf16" for precision in args.precisions]:
                for fuse in (False, True):
                    cases.append(snnlab_case(name, shape, args.device, fuse, channels_last, bf16))
                if "spikingjelly" in args.libraries:
                    try:
                        cases += spikingjelly_cases(name, shape, args.device, channels_last, bf16)
                    except ImportError as exc:
                        print(f"  spikingjelly: not installed ({exc})")
        if "snntorch" in args.libraries:
            try:
                cases.append(snntorch_case(name, shape, args.device))
            except ImportError as exc:
                print(f"  snntorch: not installed ({exc})")
    return cases


def measure(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    """Build the case, warm up, time ``--reps`` steps; its row."""
    shape = SHAPES[case.network, args.small]
    row: dict[str, Any] = {
        "network": case.network, "library": case.library, "variant": case.variant,
        "layout": "channels_last" if case.channels_last else "NCHW", "precision": "bf16" if case.bf16 else "fp32",
    }  # fmt: skip
    cuda = args.device == "cuda"
    case.activate()
    step, model = case.build()
    x, y = batch(shape, args.device, case.channels_last)
    row["fused_blocks"] = fused_blocks(model, x, case.bf16)
    row["first_loss"] = float(step(x, y))
    for _ in range(args.warmup):
        step(x, y)
    times = []
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(args.reps)
        ]
        for start, end in events:
            start.record()
            step(x, y)
            end.record()
        torch.cuda.synchronize()
        times = [start.elapsed_time(end) for start, end in events]
        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        for _ in range(args.reps):
            begin = time.perf_counter()
            step(x, y)
            times.append((time.perf_counter() - begin) * 1e3)
        row["peak_gib"] = None
    row["ms"] = statistics.median(times)
    row["ms_all"] = times
    del step, model, x, y
    if cuda:
        torch.cuda.empty_cache()
    return row


def tables(rows: list[dict[str, Any]]) -> str:
    """A markdown table per network, with each row's time relative to SpikingJelly's fastest fp32 and bf16 rows."""
    lines = []
    for name in dict.fromkeys(r["network"] for r in rows):
        mine = [r for r in rows if r["network"] == name]
        best = {}
        for precision in ("fp32", "bf16"):
            sj = [r["ms"] for r in mine if r["library"] == "spikingjelly" and r["precision"] == precision and "ms" in r]
            best[precision] = min(sj) if sj else None
        lines += [f"**{name}**", "", "| library | variant | layout | precision | fused blocks | ms/step | peak GiB | "
                  "SpikingJelly's best / this |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in mine:
            if "error" in r:
                lines.append(f"| {r['library']} | {r['variant']} | {r['layout']} | {r['precision']} | | error: "
                             f"{r['error'][:80]} | | |")  # fmt: skip
                continue
            ref = best[r["precision"]]
            peak = "n/a" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
            fused = "" if r["fused_blocks"] is None else r["fused_blocks"]
            ratio = f"{ref / r['ms']:.2f}x" if ref else ""
            lines.append(f"| {r['library']} | {r['variant']} | {r['layout']} | {r['precision']} | {fused} | "
                         f"{r['ms']:.1f} | {peak} | {ratio} |")  # fmt: skip
        lines += ["", summary(mine), ""]
    return "\n".join(lines)


TARGETS = {"dvs": 2.0, "mlp": 1.5}
"""Issue 18's targets: snnlab's step this many times faster than SpikingJelly's fastest, in fp32 and in bf16."""


def summary(rows: list[dict[str, Any]]) -> str:
    """snnlab's fastest row against SpikingJelly's fastest, per precision, and their peak memories."""
    parts = []
    for precision in ("fp32", "bf16"):
        ok = [r for r in rows if r["precision"] == precision and "ms" in r]
        mine = min((r for r in ok if r["library"] == "snnlab"), key=lambda r: r["ms"], default=None)
        theirs = min((r for r in ok if r["library"] == "spikingjelly"), key=lambda r: r["ms"], default=None)
        if mine is None or theirs is None:
            continue
        text = f"{precision}: snnlab {mine['variant']} {mine['layout']} {mine['ms']:.1f} ms against SpikingJelly "
        text += f"{theirs['variant']} {theirs['layout']} {theirs['ms']:.1f} ms, {theirs['ms'] / mine['ms']:.2f}x"
        if mine["peak_gib"] and theirs["peak_gib"]:
            text += f", peak memory {mine['peak_gib'] / theirs['peak_gib']:.2f} of its"
        parts.append(text)
    target = TARGETS[rows[0]["network"]]
    return f"Target {target}x: " + ("; ".join(parts) if parts else "no pair measured") + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--networks", nargs="+", default=["dvs", "mlp"], choices=["dvs", "mlp"])
    parser.add_argument("--libraries", nargs="*", default=["spikingjelly", "snntorch"])
    parser.add_argument("--layouts", nargs="+", default=["NCHW", "channels_last"], choices=["NCHW", "channels_last"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--small", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--out", type=Path, help="JSON of every row")
    parser.add_argument("--results", type=Path, help="write the tables into this RESULTS.md")
    args = parser.parse_args()
    rows = []
    for case in build_cases(args):
        label = f"{case.network} {case.library} {case.variant} {'CL' if case.channels_last else 'NCHW'} "
        label += "bf16" if case.bf16 else "fp32"
        try:
            rows.append(measure(case, args))
            print(f"{label}: {rows[-1]['ms']:.2f} ms, fused {rows[-1]['fused_blocks']}", flush=True)
        except Exception as exc:  # a library that cannot run a case: say so and go on
            traceback.print_exc()
            rows.append({"network": case.network, "library": case.library, "variant": case.variant,
                         "layout": "channels_last" if case.channels_last else "NCHW",
                         "precision": "bf16" if case.bf16 else "fp32", "error": str(exc).splitlines()[0]})  # fmt: skip
            if args.device == "cuda":
                torch.cuda.empty_cache()
    device = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    meta = {
        "date": datetime.date.today().isoformat(), "device": device, "torch": torch.__version__,
        "command": "python " + " ".join(sys.argv),
    }  # fmt: skip
    text = tables(rows)
    print(text)
    if args.out:
        args.out.write_text(json.dumps({**meta, "rows": rows}, indent=1))
    if args.results:
        body = f"{meta['device']}, torch {meta['torch']}, {meta['date']}: `{meta['command']}`\n\n{text}"
        write_section("network_step", "Issue 18: one training step of whole networks", body, args.results)


if __name__ == "__main__":
    main()
