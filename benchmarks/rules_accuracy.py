"""Every learning rule snnlab has on the digits, over seeds: test accuracy at the epoch chosen on validation, time
and peak memory per training epoch (``seeded_runs.epoch_meter``), beside each paper's claim (METHODS.md Part B).

The gradient rules train the same MLP (64-256-256-10; LIF over T = 8, or ReLU at T = 1), Forward-Forward the same
widths without a class layer (3 x 256); STDP and the Tempotron keep the single layer their methods define. A row
is an entry of ``ROWS``: the rule it needs and a ``seeded_runs.Row``; a rule that is not registered, or whose
experiment file is missing, is skipped with a line saying so.

    python benchmarks/rules_accuracy.py                       # every row, seeds 0 1 2, into RESULTS.md
    python benchmarks/rules_accuracy.py --only dfa forward_forward --seeds 0 --no-write
"""

from __future__ import annotations

import argparse
import sys

from seeded_runs import ROOT, Row, header, run_rows, table, write_section

from snnlab.rules import RULES

MLP = "network.blocks=[{linear: 256}, {linear: 256}, {linear: 10}]"
LIF = "network.neuron={model: lif, tau: 2.0, reset: soft, decay_input: false, surrogate: {name: atan, alpha: 2.0}}"
T1 = ("data.time_steps=1", "network.neuron=nonspiking")

ROWS: list[tuple[str, Row]] = [
    ("bptt", Row("BPTT, LIF T = 8", "quickstart", (MLP,), "reference (no digits or MNIST figure in METHODS.md 1)")),
    ("bptt", Row("backprop, T = 1 (ReLU)", "quickstart", (MLP, *T1), "reference")),
    ("sltt", Row("SLTT, LIF T = 8", "digits_sltt", (MLP,), "ImageNet: -70% memory, -50% time vs BPTT [abstract]")),
    ("rate_bp", Row("rate-based BP, LIF T = 8", "digits_rate_bp", (MLP,), "efficiency table not read")),
    (
        "forward_forward",
        Row(
            "Forward-Forward, LIF T = 8 (3 x 256)",
            "digits_ff",
            (),
            "beats earlier FF SNNs by > 5% on MNIST [abstract]; figures not confirmed",
        ),
    ),
    (
        "forward_forward",
        Row(
            "Forward-Forward, T = 1 (3 x 256 ReLU)",
            "digits_ff_t1",
            (),
            "MNIST 4 x 2000, 60 epochs: 98.64% (goodness), 98.54% (softmax) [unverified]",
        ),
    ),
    ("stdp", Row("STDP + WTA, 200 LIF, label assignment", "digits_stdp", (), "MNIST: 82.9% (100 neurons), 87.0% (400)")),
    ("tempotron", Row("Tempotron, one-vs-rest", "digits_tempotron", (), "no MNIST figure; SpikingJelly's example: argmax V_max")),
    ("dfa", Row("DFA, T = 1 (ReLU)", "digits_dfa", (), "PI-MNIST with dropout: 98.55% (1.45% error)")),
    ("dfa", Row("DFA, LIF T = 8", "digits_dfa", ("data.time_steps=8", LIF), "no SNN figure")),
    (
        "forward_gradient",
        Row(
            "forward gradient, activity-perturbed, local losses, T = 1",
            "digits_forward_gradient",
            (),
            "matches backprop on MNIST [abstract]",
        ),
    ),
    (
        "forward_gradient",
        Row(
            "forward gradient, activity-perturbed, local losses, LIF T = 8",
            "digits_forward_gradient",
            ("data.time_steps=8", LIF),
            "no SNN figure",
        ),
    ),
    (
        "forward_gradient",
        Row(
            "forward gradient, weight-perturbed, T = 1",
            "digits_forward_gradient",
            ("rule.perturb=weights",),
            "up to 2x faster than backprop [abstract]; no accuracy figure",
        ),
    ),
]


def available(rows: list[tuple[str, Row]], only: list[str] | None) -> list[Row]:
    """The rows whose rule is registered and whose experiment file exists (others announced as absent)."""
    chosen = []
    for rule, row in rows:
        if only and rule not in only:
            continue
        if rule not in RULES:
            print(f"{row.label}: rule {rule!r} is absent from this snnlab; skipped", flush=True)
        elif not (ROOT / "experiments" / f"{row.experiment}.yaml").is_file():
            print(f"{row.label}: experiments/{row.experiment}.yaml is absent; skipped", flush=True)
        else:
            chosen.append(row)
    return chosen


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", help="rule names (rule.name) whose rows to run")
    parser.add_argument("--override", nargs="*", default=[], help="appended to every row (e.g. train.epochs=1)")
    parser.add_argument("--no-write", action="store_true", help="print the table without writing RESULTS.md")
    args = parser.parse_args(argv)
    rows = [Row(r.label, r.experiment, (*r.overrides, *args.override), r.claim) for r in available(ROWS, args.only)]
    body = "\n\n".join(
        [
            header(["benchmarks/rules_accuracy.py", *(argv if argv is not None else sys.argv[1:])], args.seeds),
            table(run_rows(rows, args.seeds)),
            "Time and peak memory: medians over the training epochs of all seeds (evaluation excluded); CPU memory "
            "is the peak resident set above the epoch's start (see `seeded_runs.py`). How each rule's settings were "
            "chosen on the validation split, and what else was tried: the header of its experiment YAML.",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("rules_accuracy", "Learning rules on the digits", body)
    return body


if __name__ == "__main__":
    main()
