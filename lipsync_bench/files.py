"""Writing the files of a results folder safely: whole or not at all, by several processes at once."""
from __future__ import annotations

import errno
import os
import secrets
import sys
from pathlib import Path

from .errors import StoreError

_REASONS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file size limit exceeded", errno.EROFS: "read-only file system",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied"}
RESUME = ("the videos finished before are stored: make room (or make the folder writable) and run the same "
          "command again to resume")


CACHE_ENV_VAR = "LIPSYNC_BENCH_CACHE"


def user_cache_dir() -> Path:
    """Where work that can be redone is cached (face crops of training and study clips), so that data
    folders stay read-only: ``$LIPSYNC_BENCH_CACHE``, else the platform's cache folder
    (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on
    Windows) + ``lipsync-bench``."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "lipsync-bench"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "lipsync-bench" / "Cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lipsync-bench"


def write_failed(path, exc: OSError) -> StoreError:
    """One line for a write that failed for lack of space or permission, and what to do."""
    reason = _REASONS.get(exc.errno, exc.strerror or str(exc))
    return StoreError(f"{path}: cannot write ({reason}); {RESUME}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file under a name of its own first, then rename it: a reader never sees it half-written,
    and two processes writing the same file do not collide. A failed write raises ``write_failed``'s
    ``StoreError`` and leaves no partial file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise write_failed(path, exc) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
