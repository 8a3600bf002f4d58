"""The one rule for the output folders of giftlab's file-writing commands (`giftlab data`,
`giftlab validate`, `giftlab demo`): giftlab writes a file into an existing folder only where no
file of that name is there, or the one there is giftlab's (recorded in the folder's .giftlab-out
when giftlab wrote it, or giftlab's by its contents). A file of the user's is never replaced: the
command is refused before any work, naming it. A folder is written by one giftlab command at a
time: each holds the folder's lock (flock) while it writes, and a second is refused at once,
naming the first's process. Torch-free (the lean install runs validate)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

from giftlab.errors import InputError

RECORD = ".giftlab-out"  # the names giftlab wrote into the folder
OUT_LOCK = RECORD + ".lock"  # held while a command writes into an --out folder


def acquire_lock(lockfile, what: str) -> int:
    """Hold `lockfile` (created if missing) for this process; InputError naming `what` and the
    process holding it when another command does. Returns the descriptor (release_lock)."""
    import fcntl

    fd = os.open(lockfile, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        other = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise InputError(
            f"{what} is in use by another giftlab command (pid {other}): wait for it to finish "
            "or choose another folder"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def release_lock(fd: int) -> None:
    os.close(fd)  # releases the flock


@contextmanager
def locked(lockfile, what: str):
    """Hold `lockfile` for the block (acquire_lock)."""
    fd = acquire_lock(lockfile, what)
    try:
        yield
    finally:
        release_lock(fd)


def recorded(out: Path) -> set[str]:
    """The names giftlab recorded writing into `out` (empty when it recorded none)."""
    try:
        return set(json.loads((Path(out) / RECORD).read_text())["wrote"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def make_folder(out, flag: str = "--out") -> Path:
    """Make the output folder `out` (with its parents), or refuse naming it: a file, a folder
    that cannot be made, or one that is not writable."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{flag} {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{flag} {out}: cannot make the folder ({err.strerror})") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"{flag} {out} is not writable; choose a writable folder")
    return out


def check_names(out: Path, names, flag: str = "--out", ours=None) -> set[str]:
    """The names giftlab recorded in `out`; InputError naming the first of `names` that is there
    and not giftlab's. Writes nothing."""
    mine = recorded(out)
    for name in names:
        path = out / name
        if path.exists() and name not in mine and not (ours is not None and ours(path)):
            raise InputError(
                f"{flag} {out} holds {name}, which giftlab did not write: it never replaces a "
                f"file of yours; give another {flag} (or move {name})"
            )
    return mine


def claim_output(
    out, names: Iterable[str], flag: str = "--out", ours: Callable[[Path], bool] | None = None
) -> Path:
    """Make `out` (or refuse naming it), check that giftlab may write `names` into it, and record
    them before the work: a name already there must be one giftlab recorded, or giftlab's by its
    contents (`ours(path)`). Returns the folder. A command that writes for long holds the
    folder with output_folder instead."""
    out = make_folder(out, flag)
    names = list(names)
    mine = check_names(out, names, flag, ours)
    tmp = out / (RECORD + ".tmp")
    tmp.write_text(json.dumps({"wrote": sorted(mine | set(names))}, indent=1))
    tmp.replace(out / RECORD)
    return out


@contextmanager
def output_folder(
    out, names: Iterable[str], flag: str = "--out", ours: Callable[[Path], bool] | None = None
):
    """claim_output, holding the folder's lock for the block: a second command writing into the
    same folder meanwhile is refused at once, naming this one's process (their files never mix).
    A refusal before the lock leaves no trace in the folder."""
    names = list(names)
    out = make_folder(out, flag)
    check_names(out, names, flag, ours)
    with locked(out / OUT_LOCK, f"{flag} {out}"):
        yield claim_output(out, names, flag, ours)
