"""`multitask-push CHECKPOINT REPO_ID`: publish a multi-task checkpoint folder to the Hugging Face Hub."""

import argparse
import sys

from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError

from .hub import push_checkpoint


try:  # the HTTP client huggingface_hub raises transport errors from: httpx2 from 2.0, httpx in 1.x
    from httpx2 import HTTPError as _ClientHTTPError
except ImportError:
    from httpx import HTTPError as _ClientHTTPError

# What a push raises when the Hub cannot be reached (connection refused, DNS, timeout) or refuses the request.
HUB_ERRORS = (_ClientHTTPError, HfHubHTTPError, ConnectionError)


def describe_hub_error(error: Exception) -> str:
    """A one-line reason a push failed, naming the endpoint and what to check."""
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else "?"
        hint = " Check the token (HF_TOKEN, --token or hf auth login)." if status in (401, 403) else ""
        return f"the Hub at {constants.ENDPOINT} refused it (HTTP {status}: {str(error).splitlines()[0]}).{hint}"
    return (
        f"the Hub at {constants.ENDPOINT} cannot be reached ({type(error).__name__}: {error}). Check the network, "
        "proxy and HF_ENDPOINT settings."
    )


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
        print(f"error: {error}", file=sys.stderr)
        return 2
    except HUB_ERRORS as error:
        print(f"error: the push to {args.repo_id} failed: {describe_hub_error(error)}", file=sys.stderr)
        return 2
    print(f"{args.repo_id} at commit {commit.oid}: {commit.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
