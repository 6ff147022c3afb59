"""Acceptance-size fuzz of the command line: mutated models through apply and plot, random option sets.

    python benchmarks/fuzz_cli.py                      # 1000 models (apply and plot) and 1000 option sets
    python benchmarks/fuzz_cli.py --models 200 --options 100 --seed 3

Each case runs ``apfdsp.cli.main`` in-process (see tests/fuzz_cases.py for the cases and the judge:
exit 0, or exit 2 with one error line; no traceback, no leftover file, inputs unchanged). Prints the
counts and the first problems; exits 1 if there was any.
"""

import argparse
import collections
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from fuzz_cases import make_inputs, model_case, option_case  # noqa: E402


def run(label, count, case, seed):
    codes, problems, start = collections.Counter(), [], time.perf_counter()
    for i in range(count):
        code, found, err = case(random.Random(f"{seed}-{label}-{i}"))
        codes[code] += 1
        if found:
            problems.append((i, found, err.strip().splitlines()[-3:]))
    elapsed = time.perf_counter() - start
    print(f"{label:<16} {count:5d} cases  exit 0: {codes[0]:5d}  exit 2: {codes[2]:5d}  other: "
          f"{sum(v for k, v in codes.items() if k not in (0, 2)):3d}  problems: {len(problems):3d}  ({elapsed:.0f} s)")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000, help="mutated models (each through apply and plot)")
    parser.add_argument("--options", type=int, default=1000, help="random option sets")
    parser.add_argument("--seed", default="0")
    args = parser.parse_args()
    all_problems = []
    with tempfile.TemporaryDirectory() as directory:
        audio, model = make_inputs(directory)
        all_problems += run("models/apply", args.models,
                            lambda rnd: model_case(directory, audio, model, rnd, "apply"), args.seed)
        all_problems += run("models/plot", args.models,
                            lambda rnd: model_case(directory, audio, model, rnd, "plot"), args.seed)
        all_problems += run("option sets", args.options,
                            lambda rnd: option_case(directory, audio, model, rnd), args.seed)
    for i, found, tail in all_problems[:20]:
        print(f"case {i}: {found}\n    " + "\n    ".join(tail))
    print(f"total problems (tracebacks, leftovers, changed inputs, bad exits): {len(all_problems)}")
    return 1 if all_problems else 0


if __name__ == "__main__":
    sys.exit(main())
