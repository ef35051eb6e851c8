"""Upload every file under a folder to a run, keeping the folder structure in the names.

WANDB_BASE_URL=http://127.0.0.1:8080 WANDB_API_KEY=... python examples/upload_folder.py ./outputs my-project
"""

from __future__ import annotations

import argparse
from pathlib import Path

import wandb_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("project")
    parser.add_argument("--run-id", default=None)
    args = parser.parse_args()

    api = wandb_files.Api()
    run = api.create_run(run_id=args.run_id, project=args.project)
    for path in sorted(p for p in args.folder.rglob("*") if p.is_file()):
        uploaded = run.upload_file(path, root=args.folder)
        print(f"uploaded {uploaded.name} ({uploaded.size} bytes)")
    print(f"run: {'/'.join(run.path)}")


if __name__ == "__main__":
    main()
