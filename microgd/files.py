"""Files microgd writes: one atomic writer behind every model, picture, page and plot, and the checks a
command runs on its destinations before it starts long work.

    >>> from microgd.files import write_atomic
    >>> write_atomic("note.txt", "written whole or not at all\\n").read_text()
    'written whole or not at all\\n'

``write_atomic`` writes a temporary file beside the target, flushes it to disk and renames it over the
target in one step, so a crash or a kill mid-write leaves the old file whole. It keeps an existing
file's permission bits (a new file gets the umask's), writes through a symlink to the file it points
to (as editors do), names its temporaries ``.microgd-<pid>-<random>.tmp`` (short, so any legal target
name works) and removes temporaries of that form left by a process that no longer runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Union

__all__ = ["write_atomic", "check_writable", "check_folder", "check_distinct", "DestinationError"]

PathLike = Union[str, "os.PathLike[str]"]
_TEMPORARY = re.compile(r"\.microgd-(\d+)-[0-9a-f]{8}\.tmp")
_CAP_FOWNER = 3  # the capability to act on files as their owner (linux/capability.h)


class DestinationError(ValueError):
    """A file cannot be written where asked (or would overwrite an input); the message names the path typed."""


def write_atomic(path: PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` whole or not at all; returns ``path`` as a Path."""
    shown = Path(path)
    target = Path(os.path.realpath(path))  # through symlinks, to the file they point to
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {os.fspath(shown)!r}: folder {os.fspath(shown.absolute().parent)!r} "
                                "does not exist")
    _remove_stale_temporaries(folder)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    temporary = folder / f".microgd-{os.getpid()}-{os.urandom(4).hex()}.tmp"
    try:
        # os.open with 0o666 lets the umask decide a new file's permissions (mkstemp would force 0o600)
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise _named(error, shown) from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data.encode("utf-8") if isinstance(data, str) else data)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise _named(error, shown) from None
        raise
    return shown


def _named(error: OSError, path: Path) -> OSError:
    """``error`` naming ``path``, the file asked for, rather than our temporary (a message shows the path)."""
    return error if error.errno is None else type(error)(error.errno, error.strerror, os.fspath(path))


def _remove_stale_temporaries(folder: Path) -> None:
    """Delete ``.microgd-<pid>-*.tmp`` files whose writing process has ended (killed mid-write)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = _TEMPORARY.fullmatch(name)
        if match and not _running(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(folder / name)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: leave its files alone
    return True


def check_writable(path: PathLike, option: str = "") -> Path:
    """Check, before any long work, that a file can be written at ``path``: its folder exists and takes
    a new file (tried for real: read-only filesystems and ``/proc`` fail here), ``path`` is not a
    folder, and a file already there may be replaced by us (it is writable, and not another user's in a
    shared folder with the sticky bit, such as /tmp). Raises :class:`DestinationError` naming the path as
    typed (and the option, when given).

        >>> check_writable("model.json")
        PosixPath('model.json')
    """
    shown = os.fspath(path)
    where = _where(shown, option)
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise DestinationError(f"{where} is a folder; give a file name")
    folder = target.parent
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise DestinationError(f"{where}: folder {os.fspath(Path(shown).absolute().parent)!r} {what}")
    _probe(folder, where)
    if target.exists() and not os.access(target, os.W_OK):
        raise DestinationError(f"{where} cannot be written: it is read-only")
    if target.exists() and not _may_replace(target):
        raise DestinationError(f"{where} belongs to another user in a shared folder (sticky bit, as /tmp): only its "
                               "owner may replace it; choose another name")
    return Path(shown)


def _may_replace(target: Path) -> bool:
    """Whether the writer's last step, renaming its temporary over ``target``, will be allowed where the folder
    takes new files: the kernel's rule for a folder with the sticky bit (/tmp, mode 1777) is that only the
    file's owner, the folder's owner or a process with CAP_FOWNER may replace a file, however writable it is
    (a probe cannot show this: it is a file of ours, and a link to the target could not be removed again)."""
    folder = os.stat(target.parent)
    if not folder.st_mode & stat.S_ISVTX:
        return True
    return os.geteuid() in (os.stat(target).st_uid, folder.st_uid) or _owns_any_file()


def _owns_any_file() -> bool:
    """CAP_FOWNER in the effective capabilities (Linux's /proc/self/status), else whether we are root."""
    try:
        with open("/proc/self/status", "rb") as status:
            mask = next(line.split()[1] for line in status if line.startswith(b"CapEff:"))
    except (OSError, StopIteration):
        return os.geteuid() == 0
    return bool(int(mask, 16) >> _CAP_FOWNER & 1)


def check_folder(path: PathLike, option: str = "") -> Path:
    """Check, before any long work, that files can be written in the folder ``path``, or that it can be
    created: it is not a file, and the folder itself or its nearest existing parent takes a new file.
    Raises :class:`DestinationError` naming the path as typed (and the option, when given).

        >>> check_folder("pictures")
        PosixPath('pictures')
    """
    shown = os.fspath(path)
    where = _where(shown, option)
    folder = existing = Path(os.path.realpath(path))
    while not existing.exists():  # the first folder that exists on the way up: mkdir creates the rest there
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == folder else f"cannot be made: {os.fspath(existing)!r} is a file"
        raise DestinationError(f"{where} {what}; give a folder")
    _probe(existing, where)
    return Path(shown)


def _where(shown: str, option: str) -> str:
    """How a message names a destination: the option, then the path as typed."""
    return f"{option} {shown!r}" if option else repr(shown)


def _probe(folder: Path, where: str) -> None:
    """Create and remove a file of our temporary naming in ``folder``; DestinationError if that fails."""
    probe = folder / f".microgd-{os.getpid()}-{os.urandom(4).hex()}.tmp"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as error:
        raise DestinationError(f"{where} cannot be written: {error.strerror or error}") from None


def check_distinct(inputs: Iterable[tuple[str, PathLike]], outputs: Iterable[tuple[str, PathLike]]) -> None:
    """Refuse an output that is the same file as an input or as another output, however it is spelled
    (a symlink, a relative path, ``..``): ``inputs`` and ``outputs`` are ``(option, path)`` pairs.

        >>> check_distinct([("DATA", "data.csv")], [("--save", "./data.csv")])
        Traceback (most recent call last):
        ...
        microgd.files.DestinationError: --save './data.csv' is the same file as DATA 'data.csv': it would be overwritten
    """
    seen = [(option, os.fspath(path), os.path.realpath(path)) for option, path in inputs]
    for option, path in outputs:
        key = os.path.realpath(path)
        for other_option, other_path, other_key in seen:
            if key == other_key or _same_existing_file(key, other_key):
                raise DestinationError(f"{option} {os.fspath(path)!r} is the same file as {other_option} "
                                       f"{other_path!r}: it would be overwritten")
        seen.append((option, os.fspath(path), key))


def _same_existing_file(a: str, b: str) -> bool:
    """Hard links: two names, one file."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
