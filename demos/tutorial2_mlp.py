"""Tutorial 2, the MLP worked example: its 2-3-1 sigmoid network end to end (the same as ``microgd demo``).

Its min-max scaling and worked example (forward values, deltas, one update) beside the tutorial's
printed numbers, with a match column; then training from the tutorial's weights on the scaled table,
the denormalised predictions against the targets, and pictures of one backward pass.

    python demos/tutorial2_mlp.py [--out DIR] [--epochs N] [--lr ETA] [--seed N]

MICROGD_DEMO_FAST=1 trains for 300 epochs instead of 2000 (smoke tests).
"""

from __future__ import annotations

import argparse
import os
import sys

from microgd.app.demo import run_tutorial2

EPOCHS = 300 if os.environ.get("MICROGD_DEMO_FAST") == "1" else 2000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="microgd-out", metavar="DIR",
                        help="folder for the pictures (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, metavar="N", help="default: %(default)s")
    parser.add_argument("--lr", type=float, default=0.5, metavar="ETA", help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="shuffling of the rows (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        run_tutorial2(args.out, epochs=args.epochs, lr=args.lr, seed=args.seed)
    except KeyboardInterrupt:
        sys.exit(130)
    except ValueError as error:  # --epochs 0, --lr -1
        parser.error(str(error))
    except OSError as error:  # --out names a file, or a folder we may not write to
        parser.error(f"--out {args.out}: {error.strerror or error}")


if __name__ == "__main__":
    main()
