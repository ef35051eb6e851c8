"""List a run's files and download those that match a pattern (W&B's LIKE syntax: % is any run of characters).

WANDB_BASE_URL=http://127.0.0.1:8080 WANDB_API_KEY=... python examples/download_run.py entity/project/run_id out '%.json'
"""

from __future__ import annotations

import argparse

import wandb_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_path")
    parser.add_argument("root")
    parser.add_argument("pattern", nargs="?", default=None)
    args = parser.parse_args()

    api = wandb_files.Api()
    run = api.run(args.run_path)
    files = run.files(pattern=args.pattern)
    print(f"{run.name}: {len(files)} files")
    for f in files:
        with f.download(root=args.root, exist_ok=True) as opened:
            print(f"{f.name}\t{f.size}\t{f.md5}\t{opened.name}")


if __name__ == "__main__":
    main()
