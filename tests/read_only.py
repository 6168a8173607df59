"""A folder no process may write in, for tests of an unwritable lake.

Tests here run as root, which ignores permission bits (CAP_DAC_OVERRIDE): chmod 0o555 would
not stop it. As root the folder is bind-mounted read-only over itself instead (EROFS refuses
root too); as another user chmod is enough. Where neither works the test is skipped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    if not _mount("--bind", folder, folder):
        pytest.skip("root, and no bind mount here to make a folder read-only")
    try:
        if not _mount("-o", "remount,bind,ro", folder, folder):
            pytest.skip("root, and the bind mount cannot be remounted read-only here")
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True, capture_output=True)


def _mount(*args: object) -> bool:
    return subprocess.run(["mount", *map(str, args)], capture_output=True).returncode == 0
