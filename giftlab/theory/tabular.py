"""The tabular autoregressive model and its exact solvers (docs/theory.md section 2).

A `TabularLM` holds a base conditional distribution pi0(. | s) for every live prefix s, stored per
depth as one array: depth d has n_d = C^d live prefixes (C content tokens: V, or V - 1 with an end
token), and `probs[d]` has shape (n_d, V). Prefix i at depth d followed by the content token at
position c of `content_tokens` is prefix i * C + c at depth d + 1, so depth d + 1 is depth d
"reshaped": the solvers work depth by depth on whole arrays, never state by state.

Complete sequences (`sequences()`) come in this fixed order, which every reward array follows:
  for d = 0 .. T-1: the prefixes of depth d followed by the end token (length d + 1), in prefix
  order (only with an end token); then the live prefixes of depth T (length T), in prefix order.
Without an end token this is the V^T sequences in lexicographic order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from giftlab.theory._checks import PROB_ATOL, check_beta
from giftlab.theory.bandit import gibbs_from_logp, log_partition_from_logp

__all__ = ["SoftBellman", "TabularLM", "sequence_gibbs", "sequence_log_partition", "soft_bellman"]

_BYTES_PER_ENTRY_SOLVE = 8 * 4  # probs, log-probs, Q and policy tables, float64


class TabularLM:
    """A base policy pi0(a | s) over every prefix s of length < T, as per-depth arrays.

    Args:
        probs: sequence of T arrays; probs[d] has shape (C^d, V), rows summing to 1.
        end_token: the id in [0, V) that ends a sequence early, or None (every sequence has length T).
        check: check shapes, signs and normalisation (each row within PROB_ATOL of 1).
    """

    def __init__(self, probs: Sequence[np.ndarray], end_token: int | None = None, *, check=True):
        if len(probs) == 0:
            raise ValueError("probs must hold one table per depth (horizon >= 1), got none")
        self.probs = [np.asarray(p, dtype=np.float64) for p in probs]
        self.horizon = len(self.probs)
        self.vocab_size = self.probs[0].shape[-1]
        if end_token is not None and not 0 <= int(end_token) < self.vocab_size:
            raise ValueError(f"end_token must be in [0, {self.vocab_size}), got {end_token}")
        self.end_token = None if end_token is None else int(end_token)
        tokens = np.arange(self.vocab_size)
        self.content_tokens = tokens if end_token is None else np.delete(tokens, self.end_token)
        self.n_content = len(self.content_tokens)
        if check:
            self._check()
        self._log_probs: list[np.ndarray] | None = None

    def _check(self) -> None:
        for d, p in enumerate(self.probs):
            want = (self.n_content**d, self.vocab_size)
            if p.shape != want:
                raise ValueError(f"probs[{d}] has shape {p.shape}, expected {want} (C^d, V)")
            if not np.all(np.isfinite(p)) or np.any(p < 0):
                raise ValueError(f"probs[{d}] has negative, NaN or infinite entries")
            sums = p.sum(axis=1)
            if np.max(np.abs(sums - 1.0)) > PROB_ATOL:
                raise ValueError(
                    f"probs[{d}] has a row summing to {sums[np.argmax(np.abs(sums - 1))]:.6g} "
                    f"(tolerance {PROB_ATOL:g})"
                )

    # -- construction -------------------------------------------------------------------------

    @staticmethod
    def table_entries(vocab_size: int, horizon: int, end_token: int | None = None) -> int:
        """Number of float64 entries in the base tables: sum_{d < T} C^d * V."""
        c = vocab_size - (end_token is not None)
        return sum(c**d for d in range(horizon)) * vocab_size

    @staticmethod
    def check_fits_in_memory(
        vocab_size: int, horizon: int, end_token: int | None = None, max_bytes: int | None = None
    ) -> None:
        """Raise ValueError, saying how much is needed, when solving would not fit in memory."""
        need = TabularLM.table_entries(vocab_size, horizon, end_token) * _BYTES_PER_ENTRY_SOLVE
        if max_bytes is None:
            max_bytes = _available_memory_bytes()
        if need > max_bytes:
            raise ValueError(
                f"TabularLM(vocab_size={vocab_size}, horizon={horizon}) needs about "
                f"{need / 2**30:.1f} GiB to store and solve (base, log-base, Q and policy tables, "
                f"float64) but only {max_bytes / 2**30:.1f} GiB is available: lower vocab_size "
                f"or horizon"
            )

    @classmethod
    def random(
        cls,
        vocab_size: int,
        horizon: int,
        *,
        seed: int = 0,
        concentration: float = 1.0,
        end_token: int | None = None,
        max_bytes: int | None = None,
    ) -> TabularLM:
        """Every row drawn from Dirichlet(concentration): small concentration gives near-one-hot
        rows (and, below ~0.01, exact zeros from underflow), large gives near-uniform rows."""
        if int(vocab_size) < 1 or (end_token is not None and vocab_size < 2):
            raise ValueError(f"vocab_size must be >= 1 (>= 2 with an end token), got {vocab_size}")
        if int(horizon) < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if not concentration > 0 or not np.isfinite(concentration):
            raise ValueError(f"concentration must be finite and > 0, got {concentration}")
        cls.check_fits_in_memory(vocab_size, horizon, end_token, max_bytes)
        rng = np.random.default_rng(seed)
        c = vocab_size - (end_token is not None)
        probs = []
        for d in range(horizon):
            g = rng.gamma(concentration, size=(c**d, vocab_size))
            s = g.sum(axis=1, keepdims=True)
            # a row can underflow to all zeros at tiny concentration: make it one-hot
            empty = s[:, 0] == 0
            if np.any(empty):
                g[empty, rng.integers(vocab_size, size=int(empty.sum()))] = 1.0
                s[empty] = 1.0
            probs.append(g / s)
        return cls(probs, end_token, check=False)

    # -- views ----------------------------------------------------------------------------------

    @property
    def log_probs(self) -> list[np.ndarray]:
        """log pi0 per depth, -inf where pi0 = 0 (computed once)."""
        if self._log_probs is None:
            with np.errstate(divide="ignore"):
                self._log_probs = [np.log(p) for p in self.probs]
        return self._log_probs

    def n_prefixes(self, depth: int) -> int:
        return self.n_content**depth

    @property
    def n_sequences(self) -> int:
        ended = (
            sum(self.n_content**d for d in range(self.horizon)) if self.end_token is not None else 0
        )
        return ended + self.n_content**self.horizon

    def _live_prefix_tokens(self):
        """Yield (d, tokens (n_d, d)) for d = 0..T."""
        tokens = np.zeros((1, 0), dtype=np.int64)
        for d in range(self.horizon + 1):
            yield d, tokens
            if d < self.horizon:
                n = tokens.shape[0]
                tokens = np.concatenate(
                    [
                        np.repeat(tokens, self.n_content, axis=0),
                        np.tile(self.content_tokens, n)[:, None],
                    ],
                    axis=1,
                )

    def sequences(self) -> np.ndarray:
        """All complete sequences, (N, T) int64, padded with -1 after an end token."""
        groups = []
        for d, tokens in self._live_prefix_tokens():
            if d < self.horizon and self.end_token is not None:
                seq = np.full((tokens.shape[0], self.horizon), -1, dtype=np.int64)
                seq[:, :d] = tokens
                seq[:, d] = self.end_token
                groups.append(seq)
            elif d == self.horizon:
                groups.append(tokens)
        return np.concatenate(groups, axis=0)

    def sequence_lengths(self) -> np.ndarray:
        """(N,) lengths of `sequences()`, end token included."""
        lengths = [np.full(self.n_content**d, d + 1) for d in range(self.horizon)]
        if self.end_token is None:
            lengths = []
        lengths.append(np.full(self.n_content**self.horizon, self.horizon))
        return np.concatenate(lengths)

    def path_totals(self, tables: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) sum along each sequence of tables[d][prefix, token]: log-probs, token rewards.

        Naive equivalent: [sum(tables[t][index(y_<t), y_t] for t) for y in sequences()].
        """
        live = np.zeros(1)
        groups = []
        for d in range(self.horizon):
            t = tables[d]
            if self.end_token is not None:
                groups.append(live + t[:, self.end_token])
            live = (live[:, None] + t[:, self.content_tokens]).ravel()
        groups.append(live)
        return np.concatenate(groups)

    def sequence_log_probs(self, tables: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """(N,) log-probability of each sequence under per-depth probability tables (default pi0)."""
        if tables is None:
            return self.path_totals(self.log_probs)
        with np.errstate(divide="ignore"):
            return self.path_totals([np.log(t) for t in tables])

    def prefix_indices(self, tokens) -> list[int]:
        """Live-prefix index at each depth 0..len(tokens)-1 along a token sequence (-1 padding
        and a trailing end token allowed)."""
        tokens = [int(a) for a in np.asarray(tokens).ravel() if int(a) != -1]
        if len(tokens) > self.horizon:
            raise ValueError(f"tokens has length {len(tokens)} > horizon {self.horizon}")
        position = {int(a): c for c, a in enumerate(self.content_tokens)}
        out, i = [], 0
        for t, a in enumerate(tokens):
            if not 0 <= a < self.vocab_size:
                raise ValueError(f"tokens[{t}] = {a} is outside [0, {self.vocab_size})")
            out.append(i)
            if a == self.end_token:
                if t != len(tokens) - 1:
                    raise ValueError(f"tokens has the end token at position {t}, before its end")
                break
            i = i * self.n_content + position[a]
        return out

    def split_by_depth(self, per_sequence: np.ndarray):
        """Split an (N,) array in `sequences()` order into (ended per depth, full-length)."""
        ended, start = [], 0
        if self.end_token is not None:
            for d in range(self.horizon):
                n = self.n_content**d
                ended.append(per_sequence[start : start + n])
                start += n
        return ended, per_sequence[start:]

    def check_sequence_array(self, values, name: str = "reward") -> np.ndarray:
        """Float64 finite (N,) array aligned with `sequences()`, or ValueError naming it."""
        r = np.asarray(values, dtype=np.float64)
        if r.shape != (self.n_sequences,):
            raise ValueError(
                f"{name} must have shape ({self.n_sequences},), one entry per row of "
                f"lm.sequences(), got {r.shape}"
            )
        if not np.all(np.isfinite(r)):
            raise ValueError(f"{name} contains NaN or infinite entries")
        return r

    def check_token_tables(self, tables, name: str = "token_reward") -> list[np.ndarray]:
        if len(tables) != self.horizon:
            raise ValueError(
                f"{name} must hold {self.horizon} tables (one per depth), got {len(tables)}"
            )
        out = []
        for d, t in enumerate(tables):
            t = np.asarray(t, dtype=np.float64)
            if t.shape != self.probs[d].shape:
                raise ValueError(f"{name}[{d}] has shape {t.shape}, expected {self.probs[d].shape}")
            if not np.all(np.isfinite(t)):
                raise ValueError(f"{name}[{d}] contains NaN or infinite entries")
            out.append(t)
        return out


def _available_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


# -- soft Bellman -----------------------------------------------------------------------------


@dataclass
class SoftBellman:
    """Soft values of a TabularLM under reward r at inverse temperature beta (log space).

    q[d], policy[d]: (n_d, V) for d < T;  v[d]: (n_d,) for d <= T;  log_z = v[0][0].
    At beta = inf, q and v are the limits of Q / beta and V / beta (the best reward reachable),
    and log_z is the limit of log Z (see `log_partition`).
    """

    beta: float
    q: list[np.ndarray]
    v: list[np.ndarray]
    policy: list[np.ndarray]
    log_z: float

    def advantage(self, depth: int) -> np.ndarray:
        """A(s, a) = Q(s, a) - V(s) at every prefix of `depth`, (n_d, V)."""
        return self.q[depth] - self.v[depth][:, None]


_BLOCK_ENTRIES = 1 << 15  # rows per block chosen so one block's scratch (256 KiB) stays in cache


def _tilt_rows(log_p0: np.ndarray, q: np.ndarray, policy_out: np.ndarray) -> np.ndarray:
    """Row-wise V = log sum_a exp(log_p0 + q) and policy = exp(log_p0 + q - V), block by block.

    Naive equivalent: x = log_p0 + q; v = logsumexp(x, 1); policy = exp(x - v[:, None]).
    Blocks keep the scratch in cache and are split over two threads (numpy releases the GIL).
    """
    n, k = q.shape
    v = np.empty(n)
    rows = max(1, _BLOCK_ENTRIES // k)

    def work(start: int, stop: int) -> None:
        buf = np.empty((rows, k))
        for s in range(start, stop, rows):
            e = min(stop, s + rows)
            b = buf[: e - s]
            np.add(log_p0[s:e], q[s:e], out=b)
            m = b.max(axis=1)
            np.subtract(b, m[:, None], out=b)
            np.exp(b, out=b)
            total = b.sum(axis=1)
            np.divide(b, total[:, None], out=policy_out[s:e])
            np.log(total, out=total)
            np.add(m, total, out=v[s:e])

    if n >= 8 * rows:
        half = (n // 2 // rows) * rows
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(work, 0, half), pool.submit(work, half, n)]
            for f in futures:
                f.result()
    else:
        work(0, n)
    return v


def _q_from_children(lm: TabularLM, d: int, v_child: np.ndarray, scale: float, ended) -> np.ndarray:
    """Q at depth d: the child's value for content tokens, scale * reward for the end token."""
    n = lm.n_content**d
    if lm.end_token is None:
        return v_child.reshape(n, lm.vocab_size)
    q = np.empty((n, lm.vocab_size))
    q[:, lm.content_tokens] = v_child.reshape(n, lm.n_content)
    q[:, lm.end_token] = scale * ended[d]
    return q


def soft_bellman(lm: TabularLM, reward, beta, *, token_reward=None) -> SoftBellman:
    """Soft Bellman recursion for max E_pi[r] - KL(pi || pi0) / beta, in units of 1/beta.

    V(s_T) = beta r(y)                       at a complete sequence
    Q(s, a) = V(s . a) + beta r_t(s, a)      (r_t: optional per-token reward)
    V(s) = log sum_a pi0(a|s) exp Q(s, a)
    A(s, a) = Q(s, a) - V(s),    pi*(a|s) = pi0(a|s) exp A(s, a)

    prod_t pi*(y_t | s_t) = pi0(y) exp(beta R(y)) / Z  (sequence_gibbs), and V(root) = log Z.
    beta = inf: pi* is pi0 restricted, prefix by prefix, to continuations reaching the best
    total reward, weighted by their base mass (exact ties only).

    Args:
        lm: the base model.
        reward: (N,) sequence reward aligned with lm.sequences(), or None for zero.
        beta: inverse temperature in [0, inf].
        token_reward: optional list of T arrays (n_d, V) of per-token rewards r_t(s, a).
    Returns:
        SoftBellman with q, v, policy per depth and log_z.
    """
    beta = check_beta(beta)
    r = np.zeros(lm.n_sequences) if reward is None else lm.check_sequence_array(reward, "reward")
    tr = None if token_reward is None else lm.check_token_tables(token_reward)
    ended, full = lm.split_by_depth(r)
    if np.isinf(beta):
        return _soft_bellman_inf(lm, ended, full, tr)
    T = lm.horizon
    q, v, policy = [None] * T, [None] * (T + 1), [None] * T
    v[T] = beta * full
    for d in range(T - 1, -1, -1):
        q_d = _q_from_children(lm, d, v[d + 1], beta, ended)
        if tr is not None:
            q_d = q_d + beta * tr[d]
        policy[d] = np.empty_like(q_d)
        v[d] = _tilt_rows(lm.log_probs[d], q_d, policy[d])
        q[d] = q_d
    return SoftBellman(beta, q, v, policy, float(v[0][0]))


def _soft_bellman_inf(lm: TabularLM, ended, full, tr) -> SoftBellman:
    """beta = inf: a (max reward, log base mass on the maximisers) recursion."""
    T = lm.horizon
    q, v, policy = [None] * T, [None] * (T + 1), [None] * T
    v[T], log_mass = full.copy(), np.zeros_like(full)
    for d in range(T - 1, -1, -1):
        q_d = _q_from_children(lm, d, v[d + 1], 1.0, ended)
        child_log_mass = _q_from_children(lm, d, log_mass, 0.0, ended)
        if tr is not None:
            q_d = q_d + tr[d]
        log_p0 = lm.log_probs[d]
        policy[d] = gibbs_from_logp(log_p0 + child_log_mass, q_d, np.inf)
        support = log_p0 > -np.inf
        v[d] = np.where(support, q_d, -np.inf).max(axis=1)
        log_mass = log_partition_from_logp(log_p0 + child_log_mass, q_d - v[d][:, None], np.inf)
        q[d] = q_d
    r0 = v[0][0]
    log_z = np.inf if r0 > 0 else (-np.inf if r0 < 0 else float(log_mass[0]))
    return SoftBellman(np.inf, q, v, policy, float(log_z))


def sequence_gibbs(lm: TabularLM, reward, beta) -> np.ndarray:
    """pi*(y) = pi0(y) exp(beta r(y)) / Z over lm.sequences(), by enumeration: (N,) probabilities.

    beta = inf: pi0 restricted to the sequences of maximal reward (within pi0's support).
    """
    beta = check_beta(beta)
    r = lm.check_sequence_array(reward, "reward")
    return gibbs_from_logp(lm.sequence_log_probs(), r, beta)


def sequence_log_partition(lm: TabularLM, reward, beta) -> float:
    """log Z = log sum_y pi0(y) exp(beta r(y)) by enumeration over lm.sequences()."""
    beta = check_beta(beta)
    r = lm.check_sequence_array(reward, "reward")
    return float(log_partition_from_logp(lm.sequence_log_probs(), r, beta))
