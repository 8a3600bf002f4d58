"""The errors giftlab raises for things a user can fix. The CLI turns each into one line on stderr
and exit code 2; library callers catch them like any ValueError."""

from __future__ import annotations

from contextlib import contextmanager


class InputError(ValueError):
    """Bad user input: a config value, a data record, a path. The message names the key, the
    file and line, or the path, and what is allowed."""


class RunDirError(InputError):
    """The run folder cannot be used as asked (not empty, locked, unwritable, no valid checkpoint)."""


class NonFiniteError(InputError):
    """A loss, a gradient, a reward or the weights became NaN or infinite. Nothing non-finite is
    saved; the message names the last good checkpoint. Usually a learning rate too high for the
    model, or a verifier that returned NaN."""


FULL_BELOW = 1 << 20  # bytes free under which a failed write is put down to a full disk


# -- writes that fail ----------------------------------------------------------------------------


class WriteError(InputError):
    """A file giftlab writes could not be written (exit 2): the message names it and why."""


def write_failure(target, err: BaseException) -> str | None:
    """Why writing `target` failed, in words, when `err` is a failed write (None: it is not, and
    the caller re-raises it). The writers report a full disk each in its own way: OSError 28
    (Python, tokenizers), OSError 'N requested and M written' (numpy), SafetensorError '(os
    error 28)', RuntimeError 'unexpected pos' (torch.save); the free space decides."""
    import errno
    import shutil
    from pathlib import Path

    text = str(err)
    folder = Path(target)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    full = (
        getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        or "os error 28" in text
        or (free is not None and free < FULL_BELOW)
    )
    if full:
        left = f", {free // 1024} KiB free" if free is not None and free < FULL_BELOW else ""
        return f"the disk is full{left}"
    if isinstance(err, OSError):
        return err.strerror or (text.splitlines()[0] if text else type(err).__name__)
    return None


@contextmanager
def writing(target, then: str = ""):
    """Turn a failed write inside the block into WriteError naming `target` and why (then:
    what the user is told after, e.g. the last good checkpoint); anything else passes."""
    try:
        yield
    except Exception as err:  # the writers raise several kinds (see write_failure)
        why = write_failure(target, err)
        if why is None:
            raise
        tail = f"; {then}" if then else ""
        raise WriteError(f"writing {target} failed: {why}{tail}") from None
