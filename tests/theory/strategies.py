"""Hypothesis strategies that reach the hard cases: zeros and near-one-hot rows in the base,
rewards of very different scales, beta from 0 to 1e4 and inf."""

import numpy as np
from hypothesis import strategies as st

from giftlab.theory import TabularLM

weight = st.one_of(
    st.just(0.0),
    st.just(1e-12),
    st.floats(1e-6, 1.0),
    st.just(1.0),
)


@st.composite
def base_probs(draw, min_k=2, max_k=6):
    k = draw(st.integers(min_k, max_k))
    kind = draw(st.sampled_from(["mixed", "near_one_hot", "uniform"]))
    if kind == "near_one_hot":
        w = np.full(k, 1e-12)
        w[draw(st.integers(0, k - 1))] = 1.0
    elif kind == "uniform":
        w = np.ones(k)
    else:
        w = np.array(draw(st.lists(weight, min_size=k, max_size=k)))
        if w.sum() == 0:
            w[draw(st.integers(0, k - 1))] = 1.0
    return w / w.sum()


reward_scale = st.sampled_from([1e-3, 1.0, 1e3])


@st.composite
def rewards(draw, k):
    scale = draw(reward_scale)
    values = draw(st.lists(st.floats(-1.0, 1.0), min_size=k, max_size=k))
    return scale * np.array(values)


finite_beta = st.one_of(st.just(0.0), st.floats(1e-3, 1e4), st.sampled_from([1e-2, 1.0, 20.0]))
any_beta = st.one_of(finite_beta, st.just(np.inf))


@st.composite
def tabular_lms(draw, max_vocab=4, max_horizon=4):
    vocab = draw(st.integers(2, max_vocab))
    horizon = draw(st.integers(1, max_horizon))
    end = draw(st.one_of(st.none(), st.integers(0, vocab - 1)))
    concentration = draw(st.sampled_from([0.005, 0.1, 1.0, 30.0]))
    seed = draw(st.integers(0, 2**16))
    return TabularLM.random(vocab, horizon, seed=seed, concentration=concentration, end_token=end)
