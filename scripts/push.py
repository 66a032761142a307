"""Publish a checkpoint folder to the Hub: `python scripts/push.py CHECKPOINT REPO_ID` (same as `multitask-push`)."""

import sys

from modeling_multitask.push_cli import main


if __name__ == "__main__":
    sys.exit(main())
