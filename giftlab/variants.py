"""A user's target variant, named `MODULE:FUNCTION`: found, imported and written once for both
array kinds.

A variant is a function `(base (L, V), tokens (L,), value) -> target (L, V)`, rows summing to 1:
`giftlab validate MODULE:FUNCTION` holds it to the exact Gibbs policy (numpy, float64) and
`giftlab train objective=MODULE:FUNCTION` trains towards it (torch, chunk by chunk). Written with
the helpers below (`onehot`, `log`, `exp`, `expm1`, `softmax`, `where`) instead of `np.` calls, the
same function serves both: each helper does the numpy or the torch thing after the type of its
first argument. This module imports neither torch nor anything of giftlab's torch side.

    from giftlab.variants import log, onehot, softmax

    def gift_target(base, tokens, eta):  # the paper's GIFT target, softmax(log pi0 + eta onehot(y))
        return softmax(log(base) + eta * onehot(base, tokens))
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import numpy as np

from giftlab.errors import InputError

# MODULE:FUNCTION, the module dotted (mypkg.targets), the function an identifier
SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


class VariantError(InputError):
    """Not a valid variant: not importable, raises, wrong shape, rows not summing to 1, negative
    or non-finite entries."""


def is_variant_spec(text) -> bool:
    """'mypkg.targets:my_target' (not 'gift:5': the part after the colon is an identifier)."""
    return isinstance(text, str) and bool(SPEC.match(text))


def load_variant(spec: str):
    """'package.module:function' -> the function; VariantError naming what failed. The current
    folder is searched too (a user's own file beside the run), after the installed packages."""
    if not is_variant_spec(spec):
        raise VariantError(f"{spec!r}: give the variant as MODULE:FUNCTION, e.g. mypkg.t:target")
    module, _, name = spec.partition(":")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.append(cwd)
    try:
        mod = importlib.import_module(module)
    except SyntaxError as err:
        where = f"{err.filename}, line {err.lineno}" if err.filename else "its source"
        raise VariantError(f"{spec}: {module} has a syntax error ({where}: {err.msg})") from None
    except ImportError as err:
        raise VariantError(f"{spec}: cannot import {module} ({err})") from None
    except Exception as err:  # noqa: BLE001 - the user's module raised while importing
        raise VariantError(
            f"{spec}: importing {module} raised {type(err).__name__}: {err}"
        ) from None
    fn = getattr(mod, name, None)
    if fn is None:
        raise VariantError(f"{spec}: module {module} has no {name!r}")
    if not callable(fn):
        raise VariantError(f"{spec}: {name} is not a function")
    return fn


def torch_form(spec: str, fn):
    """The variant's torch form: `MODULE:FUNCTION_torch` when the module defines it, else the
    function itself (written with this module's helpers it takes torch tensors too). Whether it
    really computes the same target is checked by the caller (giftlab.losses.variant)."""
    module, _, name = spec.partition(":")
    return getattr(sys.modules[module], f"{name}_torch", fn)


def _torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def onehot(base, tokens):
    """(L, V) rows e_{tokens[l]} in base's dtype (numpy or torch, after `base`)."""
    if _torch(base):  # one pass in base's dtype (one_hot would make an int64 (L, V) first)
        return base.new_zeros(base.shape).scatter_(-1, tokens.long().unsqueeze(-1), 1.0)
    return np.eye(base.shape[-1], dtype=base.dtype)[tokens]


def log(x):
    """Elementwise log (log 0 = -inf, no warning)."""
    if _torch(x):
        return x.log()
    with np.errstate(divide="ignore"):
        return np.log(x)


def exp(x):
    return x.exp() if _torch(x) else np.exp(x)


def expm1(x):
    """e^x - 1 of a number or an array."""
    if _torch(x):
        return x.expm1()
    return np.expm1(x)


def softmax(z):
    """Row softmax over the last axis, stable at -inf and large entries."""
    if _torch(z):
        return z.softmax(-1)
    m = np.max(z, axis=-1, keepdims=True)
    e = np.exp(z - np.where(np.isfinite(m), m, 0.0))
    return e / e.sum(-1, keepdims=True)


def where(cond, a, b):
    """a where cond, else b (numpy or torch, after `cond`)."""
    if _torch(cond):
        import torch

        return torch.where(cond, a, b)
    return np.where(cond, a, b)


# -- the validation record: `giftlab validate` leaves its verdict where a training card finds it --


def _record_path(spec: str) -> Path | None:
    """$GIFTLAB_CACHE/validations/<sha256 of the module's source and the function's name>.json:
    an edited source file is a different variant, with no record."""
    import hashlib
    import os

    module, _, name = spec.partition(":")
    source = getattr(sys.modules.get(module), "__file__", None)
    if not source or not Path(source).is_file():
        return None
    digest = hashlib.sha256(Path(source).read_bytes() + b"\0" + name.encode()).hexdigest()[:32]
    root = Path(os.environ.get("GIFTLAB_CACHE", Path.home() / ".cache" / "giftlab"))
    return root / "validations" / f"{digest}.json"


def write_validation_record(spec: str, verdict: str, summary: str) -> None:
    """Keep `giftlab validate`'s verdict for this source (best effort: a read-only cache only
    loses the card's stamp)."""
    import json
    from datetime import datetime, timezone

    path = _record_path(spec)
    if path is None:
        return
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"verdict": verdict, "summary": summary, "when": when}))
    except OSError:
        pass


def read_validation(spec: str) -> dict | None:
    """The record `giftlab validate` left for this variant's current source, or None."""
    import json

    path = _record_path(spec)
    try:
        record = json.loads(path.read_text()) if path is not None and path.exists() else None
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and {"verdict", "summary", "when"} <= set(record)
    return record if ok else None
