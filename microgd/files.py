"""Atomic file writes: every file microgd writes (models, pictures, pages, plots) goes through here.

    >>> from microgd.files import write_atomic
    >>> write_atomic("note.txt", "written whole or not at all\\n").read_text()
    'written whole or not at all\\n'
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Union

__all__ = ["write_atomic"]


def write_atomic(path: Union[str, os.PathLike], data: Union[str, bytes]) -> Path:
    """Write ``data`` (text as UTF-8) to a temporary file beside ``path``, flush it to disk, then move it
    into place in one step: a crash mid-write leaves any old file at ``path`` intact and no temporary behind.
    """
    path = Path(path)
    folder = path.absolute().parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {os.fspath(path)!r}: folder {os.fspath(folder)!r} does not exist")
    temporary = folder / f".{path.name}.{os.urandom(4).hex()}.tmp"
    # os.open with 0o666 lets the umask decide the permissions, as for any new file (mkstemp forces 0o600)
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data.encode("utf-8") if isinstance(data, str) else data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path
