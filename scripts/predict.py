"""Predict with a multi-task checkpoint: `python scripts/predict.py CHECKPOINT_OR_REPO TEXT ...` (same as
`multitask-predict`)."""

import sys

from modeling_multitask.predict_cli import main


if __name__ == "__main__":
    sys.exit(main())
