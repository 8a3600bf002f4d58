"""Four target variants in one file, each written once for numpy and torch (giftlab.variants'
helpers), so the same function is validated and trained from the command line alone:

    giftlab validate examples.variants:gift_target --out runs/validate-gift     # ranks as GIFT
    giftlab validate examples.variants:half_mix --out runs/validate-mix         # FAIL, worse than GIFT
    giftlab train objective=examples.variants:gift_target beta=5 ...           # chunked path
    giftlab pipeline inits=sft,examples.variants:half_mix:5 ...

A variant is `(base (L, V), tokens (L,), value) -> target (L, V)` with rows summing to 1; `value`
is the setting `beta` when trained (`objective=MODULE:FUNCTION beta=5`, `inits=MODULE:FUNCTION:5`).
"""

from giftlab.variants import expm1, log, onehot, softmax


def gift_target(base, tokens, eta):
    """The paper's GIFT target: softmax(log pi0 + eta onehot(y))."""
    return softmax(log(base) + eta * onehot(base, tokens))


def half_mix(base, tokens, eta):
    """Half the base, half one-hot at every eta: right at neither limit."""
    return 0.5 * base + 0.5 * onehot(base, tokens)


def wrong_side(base, tokens, eta):
    """GIFT with beta on the wrong side: the temperature divides the base instead of scaling the
    reward, softmax(log pi0 / (1 + eta) + onehot(y))."""
    return softmax(log(base) / (1.0 + eta) + onehot(base, tokens))


def capped(base, tokens, eta):
    """The mixture (1 - w) pi0 + w onehot(y) with w = 1 - exp(-min(eta, 20)): stops growing at
    eta = 20, so it misses the eta -> inf limit."""
    w = -expm1(-min(eta, 20.0))
    return (1 - w) * base + w * onehot(base, tokens)


def half_mix_numpy(base, tokens, eta):
    """half_mix written in numpy only (np.eye indexing): validated the same, but it trains on the
    dense float64 host path, and the run says so at start."""
    import numpy as np

    return 0.5 * np.asarray(base) + 0.5 * np.eye(base.shape[1])[np.asarray(tokens)]
