"""The one rule for the output folders of giftlab's file-writing commands (`giftlab data`,
`giftlab validate`, `giftlab demo`): giftlab writes a file into an existing folder only where no
file of that name is there, or the one there is giftlab's (recorded in the folder's .giftlab-out
when giftlab wrote it, or giftlab's by its contents). A file of the user's is never replaced: the
command is refused before any work, naming it. Torch-free (the lean install runs validate)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from giftlab.errors import InputError

RECORD = ".giftlab-out"  # the names giftlab wrote into the folder


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


def claim_output(
    out, names: Iterable[str], flag: str = "--out", ours: Callable[[Path], bool] | None = None
) -> Path:
    """Make `out` (or refuse naming it), check that giftlab may write `names` into it, and record
    them before the work: a name already there must be one giftlab recorded, or giftlab's by its
    contents (`ours(path)`). Returns the folder."""
    out = make_folder(out, flag)
    names = list(names)
    mine = recorded(out)
    for name in names:
        path = out / name
        if path.exists() and name not in mine and not (ours is not None and ours(path)):
            raise InputError(
                f"{flag} {out} holds {name}, which giftlab did not write: it never replaces a "
                f"file of yours; give another {flag} (or move {name})"
            )
    tmp = out / (RECORD + ".tmp")
    tmp.write_text(json.dumps({"wrote": sorted(mine | set(names))}, indent=1))
    tmp.replace(out / RECORD)
    return out
