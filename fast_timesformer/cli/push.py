"""``fast-timesformer push WEIGHTS REPO_ID``: upload a weights folder with a model card to the Hub (parsing only).

``--dry-run DIR`` writes the folder that would be uploaded (weights, README.md, optional transformers/) and
stops there: no network, no token.
"""

from __future__ import annotations

from fast_timesformer.cli.parser import ArgumentParser, error


def run(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="fast-timesformer push",
        description="Upload a weights folder to the Hugging Face Hub with a model card (README.md) written from "
        "the run folder's summary.json, metrics.csv and config.yaml. Needs huggingface_hub and a token "
        "(hf auth login, or HF_TOKEN).",
    )
    parser.add_argument("weights", metavar="WEIGHTS", help="weights folder (export, demo's weights/ ...)")
    parser.add_argument("repo_id", metavar="REPO_ID", help="user/name on the Hub (created if missing)")
    parser.add_argument(
        "--run", metavar="DIR", help="run folder: fit's --trainer.default_root_dir or demo's output"
    )
    parser.add_argument(
        "--license", help="licence id for the card, e.g. apache-2.0 or cc-by-nc-4.0 (default: other)"
    )
    parser.add_argument(
        "--transformers",
        action="store_true",
        help="also upload a transformers Timesformer folder (transformers/)",
    )
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN, or the one hf auth login saved)")
    parser.add_argument("--revision", help="branch to commit to")
    parser.add_argument("--commit-message", help="commit message")
    parser.add_argument(
        "--dry-run", metavar="DIR", help="write the upload folder to DIR and stop (no network)"
    )
    args = parser.parse_args(argv)
    from fast_timesformer.checkpoints.hub import prepare_hub_folder, push_to_hub

    common = dict(run=args.run, license=args.license, transformers=args.transformers)
    try:
        if args.dry_run:
            folder = prepare_hub_folder(args.weights, args.dry_run, repo_id=args.repo_id, **common)
            files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
            print(f"wrote {folder}/: {', '.join(files)} (not uploaded: --dry-run)")
            return 0
        url = push_to_hub(
            args.repo_id, args.weights, private=args.private or None, token=args.token,
            revision=args.revision, commit_message=args.commit_message, **common,
        )  # fmt: skip
    except (OSError, ValueError, ImportError) as problem:  # HubError: one line from main()
        return error("push", str(problem))
    print(f"uploaded {args.weights} to {args.repo_id}: {url}")
    return 0
