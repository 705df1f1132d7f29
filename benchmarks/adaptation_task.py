"""Does adaptation carry memory? ALIF against LIF (and CUBA-LIF, whose synaptic current is a second, short time
constant) on the temporal order task generated in code (``snnlab/datasets/temporal_order.py``): the same
feed-forward 32-64-2 network, trained the same way (``experiments/temporal_order_alif.yaml``), only the hidden
neuron model changed; each over several seeds, test accuracy at the epoch chosen on the validation split.

Only the order of two bursts 25-40 steps apart tells the classes apart, so a network whose neurons forget within a
few steps (LIF, tau 5) is near chance, and one whose threshold remembers (ALIF, tau_a 60) is not.

    python benchmarks/adaptation_task.py                    # 3 seeds, the table on stdout
    python benchmarks/adaptation_task.py --write            # ... and into benchmarks/RESULTS.md
    python benchmarks/adaptation_task.py --seeds 0 --epochs 2 --samples 200   # a smoke run
"""

from __future__ import annotations

import argparse
import sys

from seeded_runs import Row, header, run_rows, table, write_section

EXPERIMENT = "temporal_order_alif"
ROWS = (
    Row("LIF (tau 5)", EXPERIMENT, ("network.neuron.model=lif",), "near chance (50%): no memory across the gap"),
    Row("CUBA-LIF (tau 5, tau_syn 2)", EXPERIMENT, ("network.neuron.model=cuba_lif",), "near chance"),
    Row("ALIF (tau 5, tau_a 60, half adapting)", EXPERIMENT, (), "LSNN: adaptation carries the memory"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="override train.epochs (default: the experiment's)")
    parser.add_argument("--samples", type=int, help="override data.train_samples (a smoke run)")
    parser.add_argument("--write", action="store_true", help="put the table into benchmarks/RESULTS.md")
    args = parser.parse_args()
    extra = ([f"train.epochs={args.epochs}"] if args.epochs else []) + (
        [f"data.train_samples={args.samples}", f"data.test_samples={args.samples}"] if args.samples else []
    )
    rows = [Row(r.label, r.experiment, (*r.overrides, *extra), r.claim) for r in ROWS]
    outcomes = run_rows(rows, args.seeds)
    body = "\n\n".join(
        [
            "`benchmarks/adaptation_task.py`: " + __doc__.split("\n\n")[0].split("? ", 1)[1].replace("``", "`"),
            header(sys.argv, args.seeds)
            + (f" Overrides: `{' '.join(extra)}`." if extra else "")
            + " Seconds per run are wall time with start-up, on a machine shared with other jobs.",
            table(outcomes, claim_header="expected"),
        ]
    )
    print(body)
    if args.write:
        write_section("adaptation_task", "Memory through adaptation: ALIF against LIF on the temporal order task", body)


if __name__ == "__main__":
    main()
