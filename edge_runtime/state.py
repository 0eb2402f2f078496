"""Where the runtime keeps what it writes (the outbox, learned thresholds), apart from its read-only configuration.

The state directory is ``runtime.state_dir`` when set, else ``$STATE_DIRECTORY`` (systemd sets it from
``StateDirectory=``), else ``/var/lib/linewatch`` for root and ``$XDG_STATE_HOME/linewatch`` (by default
``~/.local/state/linewatch``) for any other user. Relative state paths resolve there. Every OS error on
the way is one line naming the path, the cause and the fix (:func:`explain`).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from edge_runtime.contract.errors import StorageError

SYSTEM_STATE_DIR = Path("/var/lib/linewatch")


def state_directory(explicit: str = "") -> Path:
    """The state directory by the rule above (nothing is created)."""
    if explicit:
        return Path(explicit)
    from_systemd = os.environ.get("STATE_DIRECTORY", "")
    if from_systemd:
        return Path(from_systemd.split(":")[0])  # several StateDirectory= entries: the first is ours
    if os.geteuid() == 0:
        return SYSTEM_STATE_DIR
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "linewatch"


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def explain(path: Path, error: BaseException, what: str = "state directory") -> str:
    """One line: which path, what went wrong, and what to do about it."""
    folder = path if what == "state directory" else path.parent
    user = _user()
    fix_location = "set runtime.state_dir to a writable folder (or let systemd provide one with StateDirectory=)"
    code = getattr(error, "errno", None)
    existing = _nearest_existing(folder)
    if existing.exists() and not existing.is_dir():
        return f"{what} {path}: {existing} is a file, not a folder; move it away or {fix_location}"
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or "full" in str(error).lower():
        return f"{what} {path}: no space left on its file system ({error}); free space there or {fix_location}"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or not os.access(existing, os.W_OK | os.X_OK):
        return (f"{what} {path}: {existing} is not writable by user {user} ({_reason(error)}); give that user write access "
                f"or {fix_location}")
    if not folder.exists():
        return f"{what} {path}: folder {folder} does not exist and could not be created ({_reason(error)}); {fix_location}"
    return f"{what} {path}: {_reason(error)}; {fix_location}"


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):  # pragma: no cover - no passwd entry (some containers)
        return str(os.geteuid())


def prepare(path: Path, create: bool = True) -> None:
    """Make sure the state directory is usable: created (mode 0700) when missing and ``create``, and writable, proven by
    writing and removing a file. With ``create=False`` (``run --check``) nothing is left behind: a missing folder only
    needs a writable parent. Raises :class:`StorageError` with :func:`explain`'s line.
    """
    if not path.is_absolute():
        raise StorageError(f"runtime.state_dir {path}: must be an absolute path")
    try:
        if not path.exists():
            if not create:
                parent = _nearest_existing(path.parent)
                if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
                    raise PermissionError(errno.EACCES, "cannot create it")
                return
            path.mkdir(mode=0o700, parents=True)
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder")
        with tempfile.NamedTemporaryFile(dir=path, prefix=".linewatch-check-") as probe:
            probe.write(b"x")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise StorageError(explain(path, error)) from None
