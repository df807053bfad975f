"""Where runs live, and the jail: how the files of a run folder are opened.

  home_dir / cache_dir / runs_root  the one computation of the home, cache and runs folders
  find_run                           a run folder from its name or path
  read_bytes / read_json             a run's file, opened only as a regular file, never through a link
  open_append / real_dir             writes stay inside the run folder (no symlinked file or folder)

A run folder is untrusted input (it may come from someone else): every file of it is opened with
``O_NOFOLLOW`` (a symbolic link is refused, not followed) and ``O_NONBLOCK`` (a FIFO or device cannot
hang the open), checked with ``fstat`` to be a regular file, and read up to a cap. ``checkpoints/``
must be a real folder. The user's own paths (``--runs-dir``, ``SEQPLAY_HOME``, a run they name) may
be links: the user chose them. Torch-free.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from engine.errors import CheckpointError, SeqplayError

MAX_JSON_BYTES = 64 << 20  # run.json, config.json, a checkpoint's JSON: far below this
MAX_JSON_DEPTH = 200  # deeper JSON is refused before the parser recurses into it
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


# ------------------------------------------------------------------------------------------ folders
def home_dir(create: bool = True) -> Path:
    """The seqplay home folder: ``$SEQPLAY_HOME``, else the platform's user data folder (created on
    demand). An unusable one (a file, read-only, under a file) is a one-line ``SeqplayError``."""
    env = os.environ.get("SEQPLAY_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir("seqplay", appauthor=False))
    if create:
        ensure_dir(path, "the seqplay home folder")
    return path


def cache_dir(create: bool = True) -> Path:
    """``<home>/cache``: the data cache and the compiled kernels (created on demand)."""
    path = home_dir(create) / "cache"
    return ensure_dir(path, "the data cache folder") if create else path


def ensure_dir(path: Path, what: str) -> Path:
    """Create ``path`` (and parents) if needed and check it is a writable folder."""
    hint = " (set SEQPLAY_HOME to a writable folder)" if "home" in what else ""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SeqplayError(f"{what} {path} is a file, not a folder; remove it or choose another place{hint}") from None
    except NotADirectoryError:
        raise SeqplayError(f"{what} {path} is under a file, not a folder; choose another place{hint}") from None
    except OSError as err:
        raise SeqplayError(f"cannot create {what} {path}: {err.strerror}; choose a writable place{hint}") from None
    if not path.is_dir():
        raise SeqplayError(f"{what} {path} is not a folder; choose another place{hint}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise SeqplayError(f"{what} {path} is not writable; make it writable or choose another place{hint}")
    return path


def runs_root(runs_dir: str | Path | None = None) -> Path:
    """The folder holding run folders (not created): ``--runs-dir``, else ``<home>/runs``."""
    if runs_dir:
        return Path(runs_dir).expanduser()
    return home_dir(create=False) / "runs"


def find_run(name_or_path: str, runs_dir: str | Path | None = None) -> Path:
    """A run folder from its path or its name under the runs directory (a unique prefix works too)."""
    if "\0" in str(name_or_path):
        raise CheckpointError("a run name cannot contain a NUL character; see `seqplay runs`")
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    root = runs_root(runs_dir)
    if (root / name_or_path).is_dir():
        return root / name_or_path
    try:
        glob = sorted(q for q in root.glob(f"{name_or_path}*") if q.is_dir()) if root.is_dir() and not p.is_absolute() else []
    except (OSError, ValueError):
        glob = []
    if len(glob) == 1:
        return glob[0]
    if len(glob) > 1:
        raise CheckpointError(f"{name_or_path!r} matches {len(glob)} runs; give more of the name (see `seqplay runs`)")
    raise CheckpointError(f"no run or checkpoint named {name_or_path!r} in {root}; see `seqplay runs`")


def is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def real_dir(path: Path) -> Path:
    """``path`` if it is a real folder of a run (not a link); ``checkpoints/`` must be one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read ({err.strerror}); check the run folder") from None
    if stat.S_ISLNK(st.st_mode):
        raise CheckpointError(f"{path} is a symbolic link; a run folder's {path.name}/ must be a real folder (seqplay never follows links out of a run)")
    if not stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{path} is not a folder; the run folder is corrupt")
    return path


def _check_parents(path: Path) -> None:
    """The folders between a run folder and its file: only ``checkpoints/`` (must not be a link)."""
    if path.parent.name == "checkpoints":
        real_dir(path.parent)


# -------------------------------------------------------------------------------------------- reads
def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
    """An fd of ``path`` opened without following a link, checked to be a regular file.

    ``CheckpointError`` (one line) for a link, a FIFO, a device, a socket or a folder; ``OSError``
    for the rest (missing, permission) so callers keep their own wording for those."""
    path = Path(path)
    _check_parents(path)
    try:
        fd = os.open(path, flags | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC | _O_BINARY, mode)
    except OSError as err:
        if err.errno == errno.ELOOP or (err.errno != errno.ENOENT and is_link(path)):
            raise CheckpointError(f"{path} is a symbolic link; seqplay opens only the run folder's own files, never through a link") from None
        if err.errno == errno.ENXIO:  # a FIFO with no writer opened for writing, or a socket
            raise CheckpointError(f"{path} is not a regular file (a pipe, socket or device); the run folder is corrupt") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a pipe, socket or device)"
            raise CheckpointError(f"{path} is {kind}; the run folder is corrupt")
        if _O_NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: Path, limit: int, exact: int | None = None) -> bytes:
    """The content of a run's file (a regular file inside the run, at most ``limit`` bytes; with
    ``exact``, it must have exactly that size, e.g. the size a checkpoint's JSON declares)."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if exact is not None and size != exact:
            raise CheckpointError(f"{path.name} has {size:,} bytes but its checkpoint says {exact:,} (half-written or altered); use an earlier checkpoint")
        if size > limit:
            raise CheckpointError(f"{path} is {size:,} bytes, over the {limit:,} a seqplay file of this kind can be; the run folder is corrupt")
        chunks, left = [], min(limit, size) + 1  # one byte more: a file that grew is noticed
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit or (exact is not None and len(data) != exact):
        raise CheckpointError(f"{path.name} changed while it was read; try again")
    return data


def json_depth_ok(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON nests at most ``limit`` deep (brackets outside strings; a cheap pre-check so a
    hostile file nested 100,000 deep never reaches the recursive parser)."""
    data = text.encode() if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return True
    depth, in_str, esc = 0, False, False
    for b in data:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:
                esc = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif b in (0x5D, 0x7D):
            depth -= 1
    return True


class BadJSON(ValueError):
    """A run file that is not usable JSON (the message says why, in a few words)."""


def parse_json(data: bytes) -> Any:
    """JSON from untrusted bytes: depth-limited, UTF-8, no NaN surprises in keys. ``BadJSON`` if not."""
    if not json_depth_ok(data):
        raise BadJSON(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadJSON("not UTF-8") from None
    except (ValueError, RecursionError):
        raise BadJSON("not valid JSON") from None


def read_json(path: Path, limit: int = MAX_JSON_BYTES) -> Any:
    """A run's JSON file through the jail (``read_bytes``) and ``parse_json``."""
    return parse_json(read_bytes(path, limit))


# ------------------------------------------------------------------------------------------- writes
def open_append(path: Path) -> int:
    """An fd for appending to a run's file (created if missing; a link or non-file is refused)."""
    return open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
