"""`multitask-push CHECKPOINT REPO_ID`: publish a multi-task checkpoint folder to the Hugging Face Hub."""

import argparse
import sys

from .hub import push_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multitask-push",
        description="Upload a multi-task checkpoint (weights through LFS, tokenizer, remote code, pipeline and a "
        "generated model card) to the Hub. A push with no change makes no commit.",
    )
    parser.add_argument("checkpoint", help="the checkpoint folder (the training output_dir)")
    parser.add_argument("repo_id", help="the Hub repository, e.g. my-org/intent-slots")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", default=None, help="Hub token (defaults to HF_TOKEN or the saved login)")
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--revision", default=None, help="branch to push to (defaults to main)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commit = push_checkpoint(
            args.checkpoint,
            args.repo_id,
            token=args.token,
            private=args.private,
            commit_message=args.commit_message,
            revision=args.revision,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"multitask-push: error: {error}", file=sys.stderr)
        return 2
    print(f"{args.repo_id} at commit {commit.oid}: {commit.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
