"""pass@k against brute force over all k-subsets; maj@k and distinct answers by hand."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from giftlab.diagnostics import distinct_correct, majority_at_k, pass_at_k

# float64 paths held to each other or to the naive formula at 1e-9 or tighter: CI also runs
# them under other CPU capabilities (make test-exact-cpus)
pytestmark = pytest.mark.exact


@given(st.integers(1, 9), st.data())
def test_pass_at_k_equals_brute_force_over_subsets(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    np.testing.assert_allclose(pass_at_k(n, c, k), brute, rtol=1e-12, atol=1e-12)


def test_pass_at_k_is_stable_for_thousands_of_samples_and_broadcasts():
    n, c = 5000, 7
    ks = np.array([1, 10, 100, 1000])
    exact = [
        1 - math.comb(n - c, int(k)) / math.comb(n, int(k)) for k in ks
    ]  # Python integers: exact
    np.testing.assert_allclose(pass_at_k(n, c, ks), exact, rtol=1e-9)
    out = pass_at_k(np.array([[10], [20]]), np.array([[1], [2]]), np.array([1, 5]))
    assert out.shape == (2, 2)


def test_pass_at_k_rejects_k_larger_than_n():
    with pytest.raises(ValueError, match="n >= k"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="c .* must be in"):
        pass_at_k(4, 5, 1)


def test_majority_vote_and_distinct_correct():
    answers = ["a", "b", "a", "c", " a"]
    correct = [True, False, True, False, True]
    assert majority_at_k(answers, correct, k=5) == 1.0  # "a" twice vs " a", "b", "c" once
    assert majority_at_k(["x", "y", "y"], [True, False, False], k=3) == 0.0
    assert 0.0 <= majority_at_k(answers, correct, k=2, draws=50) <= 1.0
    assert distinct_correct(answers, correct) == 1
    assert distinct_correct(["1+2", "2+1", "1+2"], [True, True, True]) == 2
