"""The one integrity rule for files giftlab reads back: what it wrote is recorded (size, SHA-256,
and for a .npy array its dtype and shape) in a manifest written after the files, and reading
checks the record and refuses, naming the file and what differs. A JSON record giftlab writes
(a cache's manifest) carries a checksum of its own content, so an edit to it is seen too.
Torch-free and numpy only for .npy headers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from giftlab.errors import InputError

CHECKSUM = "checksum"  # the key of a JSON record's own checksum


class IntegrityError(InputError):
    """A file giftlab wrote differs from its record (exit 2): it was changed, cut or replaced."""


def sha256_file(path, size: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(size):
            h.update(block)
    return h.hexdigest()


def _npy_header(path: Path) -> tuple[str, list[int]]:
    import numpy as np

    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(f)
    return str(dtype), list(shape)


def file_record(path) -> dict:
    """{bytes, sha256} of a file, plus {dtype, shape} for a .npy array."""
    path = Path(path)
    record = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    if path.suffix == ".npy":
        record["dtype"], record["shape"] = _npy_header(path)
    return record


def check_file(path, record: dict, advice: str = "") -> None:
    """IntegrityError naming `path` and each of size, dtype, shape, checksum that differs from
    `record` (file_record's form); the cheap checks (size, header) come before the hash."""
    path = Path(path)
    tail = f"; {advice}" if advice else ""
    if not path.is_file():
        raise IntegrityError(f"{path} is missing (giftlab wrote it){tail}")
    size = path.stat().st_size
    if size != record.get("bytes"):
        raise IntegrityError(
            f"{path} has {size} bytes, {record.get('bytes')} were written: it was cut or "
            f"replaced{tail}"
        )
    if "dtype" in record:
        try:
            dtype, shape = _npy_header(path)
        except (ValueError, OSError) as err:
            raise IntegrityError(f"{path}: not a numpy array any more ({err}){tail}") from None
        if (dtype, shape) != (record["dtype"], list(record["shape"])):
            raise IntegrityError(
                f"{path} holds {dtype} {tuple(shape)}, {record['dtype']} "
                f"{tuple(record['shape'])} was written{tail}"
            )
    if sha256_file(path) != record.get("sha256"):
        raise IntegrityError(
            f"{path}: its content changed after giftlab wrote it (SHA-256 differs){tail}"
        )


def json_checksum(data: dict) -> str:
    """The checksum of a JSON record's content, its own `checksum` key left out."""
    body = {k: v for k, v in data.items() if k != CHECKSUM}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal(data: dict) -> dict:
    """`data` with its checksum (json_checksum) under `checksum`."""
    return {**data, CHECKSUM: json_checksum(data)}


def check_sealed(path, data: dict, advice: str = "") -> None:
    """IntegrityError naming `path` when a sealed record's checksum does not match its content
    (a record without one is left to the caller: older giftlab wrote none)."""
    if CHECKSUM in data and data[CHECKSUM] != json_checksum(data):
        tail = f"; {advice}" if advice else ""
        raise IntegrityError(
            f"{path} was edited after giftlab wrote it (its checksum does not match its "
            f"content){tail}"
        )


# -- a folder of files written at once (a checkpoint, a model folder) ------------------------------

FOLDER_MANIFEST = "giftlab-files.json"  # the records of a folder's files, written after them
UNRECORDED = ("README.md",)  # the model card: the user's to edit, never read back by giftlab


def write_folder_manifest(folder, extra: dict | None = None) -> None:
    """Record every file of `folder` (file_record) but its model card, with `extra` (the run's
    settings), in its FOLDER_MANIFEST, sealed: call it after the folder's last file is written."""
    folder = Path(folder)
    files = {
        p.name: file_record(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != FOLDER_MANIFEST and p.name not in UNRECORDED
    }
    body = seal({"files": files, **(extra or {})})
    (folder / FOLDER_MANIFEST).write_text(json.dumps(body, indent=1, default=str))


def read_folder_manifest(folder) -> dict | None:
    """The sealed record of a folder giftlab wrote (None: a folder without one, made by another
    tool or an older giftlab); IntegrityError when the record is damaged or edited."""
    path = Path(folder) / FOLDER_MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise ValueError("no file records")
    except (ValueError, UnicodeDecodeError) as err:
        raise IntegrityError(f"{path} is damaged ({err})") from None
    check_sealed(path, data)
    return data


def check_folder(folder, advice: str = "") -> dict | None:
    """Check every file a folder's record names (check_file); returns the record (None when the
    folder has none)."""
    data = read_folder_manifest(folder)
    if data is not None:
        for name, record in data["files"].items():
            check_file(Path(folder) / name, record, advice)
    return data
