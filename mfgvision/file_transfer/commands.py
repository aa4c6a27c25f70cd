"""Command lines of ``mfgvision file-upload`` and ``mfgvision file-download``.

Run once (the default), they print a JSON summary and exit 1 when anything failed. With
``--interval S`` they run as a module: again every S seconds, status in reported properties, until
SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from mfgvision.file_transfer.common import TransferReport
from mfgvision.file_transfer.module import download_dest, download_job, upload_folder, upload_job


def _once(job: Callable[[], TransferReport]) -> int:
    from mfgvision.image_upload.targets import TargetConfigError

    try:
        report = job()
    except (TargetConfigError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.ok else 1


#: Runs a module command until SIGTERM: ``(command, desired file, duration) -> exit code``.
ModuleRunner = Callable[[list[str], Path | None, float | None], int]


def _progress(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)


def file_upload_main(args: argparse.Namespace, run_module: ModuleRunner) -> int:
    """Upload once, or run as a module with ``--interval``."""
    folder = upload_folder(args)
    if args.interval is not None:
        return run_module(
            [
                args.command,
                str(folder),
                *("--container", args.container, "--prefix", args.prefix),
                *("--interval", str(args.interval)),
            ],
            args.desired,
            args.duration,
        )
    return _once(upload_job(folder, args.container, args.prefix, _progress(args)))


def file_download_main(args: argparse.Namespace, run_module: ModuleRunner) -> int:
    """Download once, or run as a module with ``--interval``."""
    dest = download_dest(args)
    if args.interval is not None:
        return run_module(
            [
                args.command,
                *("--mode", args.mode, "--dest", str(dest)),
                *("--container", args.container, "--interval", str(args.interval)),
            ],
            args.desired,
            args.duration,
        )
    return _once(download_job(args.mode, dest, args.container, _progress(args)))
