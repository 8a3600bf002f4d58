"""Issue 27, a full disk: every writer giftlab calls reports it in its own way (OSError 28 from
Python and the tokenizer, numpy's OSError 'N requested and M written' with no errno,
safetensors' SafetensorError '(os error 28)', torch.save's RuntimeError 'unexpected pos'), and
before the fix they all reached the user as a traceback or an '[Errno 28]' with no path. Now each
is a one-line error naming the file. The real writers run on a real full file system (a small
tmpfs, where the machine lets the tests mount one), and the classifier on the messages they
gave there."""

import errno
import subprocess

import numpy as np
import pytest
import torch

from giftlab.errors import WriteError, write_failure, writing


@pytest.fixture
def disk(tmp_path):
    """A 512 KiB file system at tmp_path/disk (skipped where the tests may not mount one)."""
    where = tmp_path / "disk"
    where.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small file system here ({res.stderr.strip()[:80]})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk, leave: int = 8 << 10):
    """Fill the file system up to `leave` bytes."""
    import shutil

    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def _tiny():
    from giftlab.models import tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer()
    return tiny_llama(len(tok), hidden_size=64), tok


WRITERS = {
    "numpy": lambda p: np.save(p / "a.npy", np.zeros(200_000)),
    "torch.save": lambda p: torch.save({"x": torch.zeros(200_000)}, p / "state.pt"),
    "safetensors": lambda p: _tiny()[0].save_pretrained(p / "model"),
    "tokenizers": lambda p: [_tiny()[1].save_pretrained(p / f"tok{i}") for i in range(40)],
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_each_writer_on_a_full_disk_is_one_line_naming_the_path(disk, writer):
    _fill(disk)
    with pytest.raises(WriteError, match=rf"writing {disk} failed: the disk is full"):
        with writing(disk):
            WRITERS[writer](disk)


@pytest.mark.parametrize(
    "err",
    [
        OSError(errno.ENOSPC, "No space left on device"),  # Python, the tokenizer's JSON
        OSError("200000 requested and 8176 written"),  # numpy, no errno
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),
        Exception("Error while serializing: I/O error: No space left on device (os error 28)"),
    ],
    ids=["errno 28", "numpy", "torch.save", "safetensors"],
)
def test_the_messages_the_writers_gave_on_a_full_disk_are_read_as_one(tmp_path, monkeypatch, err):
    """The classifier on the errors seen on a real full tmpfs (torch's and numpy's say nothing
    of the disk: the free space decides)."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 20, 1 << 20, 4096))
    assert write_failure(tmp_path / "x", err) == "the disk is full, 4 KiB free"


def test_a_bug_while_writing_is_not_called_a_full_disk(tmp_path):
    with pytest.raises(TypeError):
        with writing(tmp_path / "x"):
            raise TypeError("a bug, not a write failure")


def test_train_on_a_full_disk_names_the_checkpoint_and_the_last_good_one(disk, capsys):
    """Through the CLI: the run's first files fit, its checkpoint does not."""
    from giftlab.cli import main
    from giftlab.models import tiny_tokenizer
    from tests.helpers import save_tiny_model, write_jsonl

    model_dir = disk.parent / "model"
    save_tiny_model(model_dir, vocab=len(tiny_tokenizer()))
    rows = [{"prompt": f"add {a} {b}", "response": str(a + b)} for a in range(4) for b in range(4)]
    data = write_jsonl(disk.parent / "train.jsonl", rows)
    _fill(disk, leave=64 << 10)
    out = disk / "run"
    argv = ["train", f"model={model_dir}", f"train_file={data}", "val_file=", "max_steps=2"]
    argv += ["batch_size=2", "progress=false", "max_length=64", f"out_dir={out}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "the disk is full" in err
    assert f"writing {out}" in err
