"""All byte movement: every download and upload of the SDK goes through this package.

Download discipline (the same for `File.download`, bulk downloads and the CLI):
- the target must stay inside the destination folder, whatever name the server sends, and a download only
  ever changes the path it names: no symbolic link on the way is followed, and a link at the target itself
  is replaced (with `replace`), never written through;
- bytes stream in 1 MiB chunks into a hidden temp file beside the target, never into memory; the temp file
  is claimed with a lock on itself, so two processes never write the same one;
- a failed attempt keeps its temp file and the next attempt continues with `Range` (+ `If-Range`);
- big files come as parallel `Range` parts written at their offsets into that one temp file, with a small
  resume state beside it, so the parts that finished stay finished (see `ranges`);
- size and md5 are checked against the server's record before `os.replace` puts the file under its name,
  so a crash, a truncated body or a flipped byte never leaves a wrong file under a final name;
- connection errors, timeouts, 408/429/5xx, truncated bodies and md5 mismatches are retried with backoff,
  within the client's deadline (which starts again whenever bytes arrive);
- Ctrl-C stops a bulk transfer within about a second: running transfers stop at their next chunk (their
  connections are shut down), queued ones never start, and temp files are kept for the next call;
- a bulk call reads its jobs as they come (a listing page by page), keeps to its bandwidth limit across
  workers, and runs fewer attempts at once while the server answers 429;
- the API key goes only to the server's own origin (`wandb_files.http.HTTPClient.auth_for`).

Every request goes through `wandb_files.http` (the session, the streaming GET, what a failure means); nothing
here knows GraphQL. The rooms: `paths` (where a file may go), `hashing` (md5 and ETags), `locks` (claiming temp
files), `jobs` (what a bulk download is asked to fetch), `runner` (the thread pool, progress bar, Ctrl-C and failure
aggregation of bulk calls), `flow` (stopping one call, its bandwidth limit and its concurrency), `settings`
(workers, bandwidth, progress and the engine from arguments or the environment), `downloads` and `uploads` (by local
path and name), `ranges` (big files in parallel parts), `plan` (dry runs), `curl` (the native engine for bulk
downloads) and `engines` (which engine a bulk download runs on: `downloads` and `curl` do not know each other).
"""

from __future__ import annotations

from wandb_files.transfer.downloads import download, download_many, download_one
from wandb_files.transfer.engines import choose_engine
from wandb_files.transfer.flow import Cancel
from wandb_files.transfer.hashing import CHUNK_SIZE, file_md5, md5_base64, md5_matches
from wandb_files.transfer.jobs import DownloadJob, clashing_jobs
from wandb_files.transfer.paths import (
    Destination,
    check_root,
    local_copy_matches,
    name_problem,
    part_path,
    target_path,
)
from wandb_files.transfer.plan import DryRunFile, plan_downloads
from wandb_files.transfer.settings import (
    DEFAULT_MAX_WORKERS,
    check_max_bandwidth,
    check_max_workers,
    default_max_workers,
    parse_bandwidth,
    progress_enabled,
)
from wandb_files.transfer.uploads import UploadJob, plan_named_uploads, plan_uploads, upload, upload_many

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_MAX_WORKERS",
    "Cancel",
    "Destination",
    "DownloadJob",
    "DryRunFile",
    "UploadJob",
    "check_max_bandwidth",
    "check_max_workers",
    "check_root",
    "choose_engine",
    "clashing_jobs",
    "default_max_workers",
    "download",
    "download_many",
    "download_one",
    "file_md5",
    "local_copy_matches",
    "md5_base64",
    "md5_matches",
    "name_problem",
    "parse_bandwidth",
    "part_path",
    "plan_downloads",
    "plan_named_uploads",
    "plan_uploads",
    "progress_enabled",
    "target_path",
    "upload",
    "upload_many",
]
