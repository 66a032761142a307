"""Train a multi-task model from an experiment file: `python scripts/train.py experiment.yaml [--set k=v] [--resume]`."""

import sys

from modeling_multitask.training.cli import main


if __name__ == "__main__":
    sys.exit(main())
