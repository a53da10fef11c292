"""Objective parity: replay one recorded training step of the official MuQ code with muqkit.

Loads a fixture folder in the ``objective_small`` layout (any dims, batch size and length; see
``muqkit.hub.official.objective``), replays the ``MuQModel`` step with ``MuQPretrainer`` (the recorded
block mask and noise) and the Mel-RVQ step with the Mel-RVQ trainer, in float32 and in float64 end to
end, prints every compared quantity with its difference and tolerance (a ``fp64`` row per quantity
of the official float64 step when the folder has ``expected64.safetensors``), ends with a one-line
summary and exits 1 when a tolerance is missed (2 when the folder is not a fixture).

    .venv/bin/python bench/parity_objective.py ../shared/parity/objective_small
"""

from __future__ import annotations

import argparse
import sys

from muqkit.hub.official.objective import check_objective


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="fixture folder: model/, inputs.safetensors, expected.safetensors")
    parser.add_argument("--loss-tolerance", type=float, default=1e-5, help="relative (default 1e-5)")
    parser.add_argument("--gradient-tolerance", type=float, default=1e-4,
                        help="of each float32 gradient's largest magnitude (default 1e-4)")
    parser.add_argument("--float64-tolerance", type=float, default=1e-9,
                        help="of each float64 quantity's largest magnitude, when the fixture has "
                        "expected64.safetensors (default 1e-9)")
    args = parser.parse_args(argv)
    try:
        report = check_objective(args.folder, loss_tolerance=args.loss_tolerance,
                                 gradient_tolerance=args.gradient_tolerance,
                                 float64_tolerance=args.float64_tolerance)
    except FileNotFoundError as exc:
        print(f"parity_objective: {exc}", file=sys.stderr)
        return 2
    print(report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
