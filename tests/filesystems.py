"""Real small file systems for the tests of full and read-only disks: a tmpfs mounted at a
folder (as root, or through passwordless sudo as CI's apt-get step uses). A test that needs one
fails, naming what it needs, where neither is possible: it never skips."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _as_root(command: list[str]) -> list[str]:
    """`command` as root: itself for root, through `sudo -n` (never asks) otherwise."""
    return command if os.geteuid() == 0 else ["sudo", "-n", *command]


@contextlib.contextmanager
def small_file_system(folder: Path, size_kb: int, read_only: bool = False) -> Iterator[Path]:
    """`folder` as a real tmpfs of `size_kb` KiB (read-only on request), unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kb}k,mode=1777" + (",ro" if read_only else "")
    if shutil.which("mount") is None:
        pytest.fail("this test mounts a small tmpfs (a real full or read-only disk): `mount` is missing")
    mounted = subprocess.run(_as_root(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]),
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"this test mounts a small tmpfs (a real full or read-only disk) and needs root or "
                    f"passwordless sudo for it: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(_as_root(["umount", "-l", str(folder)]), check=False)


def grow(folder: Path, size_kb: int) -> None:
    """Give the tmpfs mounted at `folder` `size_kb` KiB (room made on a full disk)."""
    subprocess.run(_as_root(["mount", "-o", f"remount,size={size_kb}k", str(folder)]), check=True)
