"""The errors giftlab raises for things a user can fix. The CLI turns each into one line on stderr
and exit code 2; library callers catch them like any ValueError."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: a config value, a data record, a path. The message names the key, the
    file and line, or the path, and what is allowed."""


class RunDirError(InputError):
    """The run folder cannot be used as asked (not empty, locked, unwritable, no valid checkpoint)."""


class NonFiniteError(InputError):
    """A loss, a gradient, a reward or the weights became NaN or infinite. Nothing non-finite is
    saved; the message names the last good checkpoint. Usually a learning rate too high for the
    model, or a verifier that returned NaN."""
