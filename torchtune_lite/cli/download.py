"""`tune download <repo-id> --output-dir DIR`: fetch a model from the Hugging Face Hub."""

from __future__ import annotations

import argparse
import os

from torchtune_lite.cli._errors import fail

_TIMEOUT_SECONDS = 10


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("download", help="download a model from the Hugging Face Hub")
    parser.add_argument("repo_id", help="e.g. meta-llama/Llama-2-7b-hf")
    parser.add_argument("--output-dir", required=True, help="folder to write the files to")
    parser.add_argument("--hf-token", default=None, help="token for gated models (or set HF_TOKEN)")
    parser.add_argument("--ignore-patterns", nargs="+", default=None, help="globs of files to skip, e.g. '*.pth'")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    # huggingface_hub reads its timeouts when imported, so set them first; a dead network then fails in
    # seconds instead of hanging.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(_TIMEOUT_SECONDS))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(_TIMEOUT_SECONDS))
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        path = snapshot_download(
            args.repo_id,
            local_dir=args.output_dir,
            token=args.hf_token or os.environ.get("HF_TOKEN"),
            ignore_patterns=args.ignore_patterns,
            etag_timeout=_TIMEOUT_SECONDS,
        )
    except GatedRepoError:
        fail(f"{args.repo_id} is gated: accept its license on huggingface.co and pass --hf-token", code=1)
    except RepositoryNotFoundError:
        fail(f"{args.repo_id} was not found on the Hugging Face Hub (or is private: pass --hf-token)", code=1)
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") else "no network?"
        fail(
            f"cannot reach the Hugging Face Hub to download {args.repo_id} ({why}): download the files "
            "elsewhere and point checkpointer.checkpoint_dir at them",
            code=1,
        )
    except Exception as err:  # network stacks raise many types; one line is what the user needs
        fail(f"downloading {args.repo_id} failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}", code=1)
    print(f"Downloaded {args.repo_id} to {path}")
