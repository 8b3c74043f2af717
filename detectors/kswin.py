"""KSWIN: a sliding-window Kolmogorov-Smirnov test, with river 0.26.1's exact decisions.

River's ``KSWIN`` keeps the last ``window_size`` values; once the window is full, every update
compares the last ``stat_size`` values with ``stat_size`` values drawn without replacement from
the older part of the window (``random.Random(seed).sample``) using scipy's exact two-sample KS
test, and signals drift when ``p_value <= alpha`` and the statistic exceeds 0.1.

Everything river does per update happens here in one numba kernel over a float64 row:

- CPython's Mersenne Twister (``random.Random(int)``: ``init_by_array`` on the seed's 32-bit
  words, ``getrandbits``, ``_randbelow`` and both code paths of ``sample``) lives in the row, so
  the same seed draws the same samples as river;
- the window is kept sorted as it slides (each value knows its ring slot, each slot its rank),
  so a sample is a set of marked ranks and the KS distance is one branch-free pass over the
  sorted window, without sorting anything; as in scipy, the statistic is an integer number of
  steps ``h`` (``D = h / stat_size``);
- the p-value of scipy 1.17's exact test for equal sample sizes depends on ``h`` only: the
  kernel reads it from a table computed at construction by :func:`_prob_outside_square`, a
  numba transcription of scipy's ``_compute_prob_outside_square`` in scipy's operation order.

When ``window_size == 2 * stat_size`` the sample is the whole older half of the window whatever
the seed, so no random numbers are drawn at all.
"""

from __future__ import annotations

import math
import operator

import numpy as np
from numba import njit

from detectors._base import DRIFT, StreamDetector, check_finite
from detectors._runs import update_in_runs
from detectors.bank import DetectorBank

# State row header; the regions after it are placed by offsets stored in the parameters.
_N = 2  # updates since the last reset (river's ``n``)
_P_VALUE = 3
_COUNT = 4  # values pushed since the last reset; the t-th lives in ring slot t % window_size
_MT_INDEX = 5  # Mersenne Twister position; -1 means "seed at first use"
_HEADER = 6

# Parameter vector.
_ALPHA = 0
_WINDOW_SIZE = 1
_STAT_SIZE = 2
_SAMPLING = 3  # _WHOLE_HALF, _POOL or _SET (which branch of random.sample river takes)
_SEEDED = 4
_SEED_SIGN = 5
_N_KEY = 6
_N_INITIAL = 7
_OFF_MT = 8
_OFF_VALUES = 9  # the window's values, sorted
_OFF_SLOTS = 10  # ring slot of each sorted value
_OFF_RANK_OF = 11  # sorted position of each ring slot
_OFF_ROLES = 12  # per sorted value: _OLDER, _RECENT (one of the last stat_size), or _SAMPLED
_OFF_CHOSEN = 13  # sorted positions of this update's sample, to clear their _SAMPLED role
_OFF_SCRATCH = 14  # the pool (_POOL) or the "already selected" flags (_SET)
_OFF_KEY = 15
_OFF_INITIAL = 16
_OFF_P_TABLE = 17
_PARAM_HEADER = 18

_WHOLE_HALF, _POOL, _SET = 0.0, 1.0, 2.0
_OLDER, _RECENT, _SAMPLED = 0.0, 1.0, 2.0  # _SAMPLED only between _mark_sample and _ks_steps

_MT_N = 624
_MT_M = 397
_MASK32 = 0xFFFFFFFF
_UNSEEDED_KEY_WORDS = 4  # seed=None: 128 bits from numba's (entropy-seeded) generator per reset

# scipy's ks_2samp(method="auto") switches to an asymptotic p-value above this sample size.
_MAX_EXACT_STAT_SIZE = 10000


# --- CPython's MT19937 (Modules/_randommodule.c), 32-bit words held as float64 ---------------


@njit(cache=True)
def _init_genrand(mt, s):
    mt[0] = s
    for i in range(1, _MT_N):
        prev = int(mt[i - 1])
        mt[i] = (1812433253 * (prev ^ (prev >> 30)) + i) & _MASK32


@njit(cache=True)
def _init_by_array(mt, key):
    _init_genrand(mt, 19650218)
    key_length = len(key)
    i = 1
    j = 0
    for _ in range(max(_MT_N, key_length)):
        prev = int(mt[i - 1])
        mt[i] = ((int(mt[i]) ^ ((prev ^ (prev >> 30)) * 1664525)) + int(key[j]) + j) & _MASK32
        i += 1
        j += 1
        if i >= _MT_N:
            mt[0] = mt[_MT_N - 1]
            i = 1
        if j >= key_length:
            j = 0
    for _ in range(_MT_N - 1):
        prev = int(mt[i - 1])
        mt[i] = ((int(mt[i]) ^ ((prev ^ (prev >> 30)) * 1566083941)) - i) & _MASK32
        i += 1
        if i >= _MT_N:
            mt[0] = mt[_MT_N - 1]
            i = 1
    mt[0] = 0x80000000


@njit(cache=True, inline="always")
def _twist_word(mt, kk, next_kk, far_kk):
    y = (int(mt[kk]) & 0x80000000) | (int(mt[next_kk]) & 0x7FFFFFFF)
    mt[kk] = int(mt[far_kk]) ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)


@njit(cache=True, inline="always")
def _twist(mt):
    for kk in range(_MT_N - _MT_M):
        _twist_word(mt, kk, kk + 1, kk + _MT_M)
    for kk in range(_MT_N - _MT_M, _MT_N - 1):
        _twist_word(mt, kk, kk + 1, kk + _MT_M - _MT_N)
    _twist_word(mt, _MT_N - 1, 0, _MT_M - 1)


@njit(cache=True, inline="always")
def _next_word(mt, index):
    """genrand_uint32: the tempered word at ``index``; returns it and the next index."""
    if index >= _MT_N:
        _twist(mt)
        index = 0
    y = int(mt[index])
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    y ^= y >> 18
    return y, index + 1


@njit(cache=True, inline="always")
def _randbelow(mt, index, n):
    """random.Random._randbelow_with_getrandbits for 1 <= n < 2**32; returns (draw, next index)."""
    bits = 0
    while (n >> bits) != 0:
        bits += 1
    shift = 32 - bits  # getrandbits(k <= 32) is the top k bits of one word
    y, index = _next_word(mt, index)
    while (y >> shift) >= n:
        y, index = _next_word(mt, index)
    return y >> shift, index


@njit(cache=True)
def _seed(mt, params):
    if params[_SEEDED] != 0.0:
        key_start = int(params[_OFF_KEY])
        _init_by_array(mt, params[key_start : key_start + int(params[_N_KEY])])
    else:
        key = np.empty(_UNSEEDED_KEY_WORDS, np.float64)
        for i in range(_UNSEEDED_KEY_WORDS):
            key[i] = np.random.randint(0, 2**32)
        _init_by_array(mt, key)
    return _MT_N


# --- scipy 1.17's exact p-value for two samples of equal size -------------------------------


@njit(cache=True)
def _prob_outside_square(n, h):
    """scipy.stats._stats_py._compute_prob_outside_square: P(D_{n,n} >= h/n), same float ops."""
    p = 0.0
    k = n // h
    while k >= 0:
        p1 = 1.0
        for j in range(h):
            p1 = float(n - k * h - j) * p1 / float(n + k * h + j + 1)
        p = p1 * (1.0 - p)
        k -= 1
    return 2 * p


@njit(cache=True)
def _exact_p_values(n):
    """p-value of an exact two-sided test by KS distance h / n, h = 0..n; NaN where scipy's exact
    computation falls outside [0, 1] and scipy falls back to the asymptotic distribution."""
    table = np.empty(n + 1, np.float64)
    table[0] = 1.0
    for h in range(1, n + 1):
        p = _prob_outside_square(n, h)
        table[h] = p if 0.0 <= p <= 1.0 else np.nan
    return table


def _p_value_table(stat_size: int) -> np.ndarray:
    table = _exact_p_values(stat_size)
    fallback = np.flatnonzero(np.isnan(table))
    if len(fallback):
        # scipy's own fallback after an unsuccessful exact computation (rare, and only for
        # p-values within rounding of 1)
        from scipy.stats import kstwo

        table[fallback] = np.clip(kstwo.sf(fallback / stat_size, np.round(stat_size / 2.0)), 0.0, 1.0)
    return table


# --- the sliding window, kept sorted -------------------------------------------------------


@njit(cache=True)
def _region(state, params, offset, size):
    start = int(params[offset])
    return state[start : start + size]


@njit(cache=True)
def _settle(state, params, i, length, x, slot):
    """Put the new recent value (x, slot) into the hole at sorted position i of the first
    ``length`` entries, shifting the entries in between."""
    window_size = int(params[_WINDOW_SIZE])
    values = _region(state, params, _OFF_VALUES, window_size)
    slots = _region(state, params, _OFF_SLOTS, window_size)
    rank_of = _region(state, params, _OFF_RANK_OF, window_size)
    roles = _region(state, params, _OFF_ROLES, window_size)
    while i + 1 < length and values[i + 1] < x:
        values[i] = values[i + 1]
        slots[i] = slots[i + 1]
        roles[i] = roles[i + 1]
        rank_of[int(slots[i])] = i
        i += 1
    while i > 0 and values[i - 1] > x:
        values[i] = values[i - 1]
        slots[i] = slots[i - 1]
        roles[i] = roles[i - 1]
        rank_of[int(slots[i])] = i
        i -= 1
    values[i] = x
    slots[i] = slot
    roles[i] = _RECENT
    rank_of[slot] = i


@njit(cache=True)
def _push(state, params, x):
    """Append x to the window (replacing the oldest value once full); returns the window length."""
    window_size = int(params[_WINDOW_SIZE])
    stat_size = int(params[_STAT_SIZE])
    rank_of = _region(state, params, _OFF_RANK_OF, window_size)
    count = int(state[_COUNT])
    slot = count % window_size
    if count >= stat_size:
        # the value pushed stat_size ago leaves the recent part
        _region(state, params, _OFF_ROLES, window_size)[int(rank_of[(count - stat_size) % window_size])] = _OLDER
    if count >= window_size:
        # the oldest value lived in this very slot: its sorted position becomes the hole
        _settle(state, params, int(rank_of[slot]), window_size, x, slot)
    else:
        _settle(state, params, count, count + 1, x, slot)
    state[_COUNT] = count + 1
    return min(count + 1, window_size)


@njit(cache=True)
def _mark_sample(state, params):
    """river's ``rng.sample(range(window_size - stat_size), stat_size)`` over the older part of
    the full window (CPython's two branches of ``Random.sample``), marked by sorted position."""
    window_size = int(params[_WINDOW_SIZE])
    population = window_size - int(params[_STAT_SIZE])
    stat_size = int(params[_STAT_SIZE])
    mt = _region(state, params, _OFF_MT, _MT_N)
    index = int(state[_MT_INDEX])
    if index < 0:
        index = _seed(mt, params)
    rank_of = _region(state, params, _OFF_RANK_OF, window_size)
    roles = _region(state, params, _OFF_ROLES, window_size)
    chosen = _region(state, params, _OFF_CHOSEN, stat_size)
    scratch = _region(state, params, _OFF_SCRATCH, population)
    oldest = int(state[_COUNT]) % window_size  # ring slot of river's window[0]
    if params[_SAMPLING] == _POOL:
        for i in range(population):
            scratch[i] = i
        for i in range(stat_size):
            j, index = _randbelow(mt, index, population - i)
            chosen[i] = scratch[j]
            scratch[j] = scratch[population - i - 1]
    else:
        # scratch holds "already selected" flags by position, all zero between updates
        for i in range(stat_size):
            j, index = _randbelow(mt, index, population)
            while scratch[j] != 0.0:
                j, index = _randbelow(mt, index, population)
            scratch[j] = 1.0
            chosen[i] = j
        for i in range(stat_size):
            scratch[int(chosen[i])] = 0.0
    # positions in river's window -> sorted positions, marked until _ks_steps has counted them
    for i in range(stat_size):
        slot = oldest + int(chosen[i])
        rank = int(rank_of[slot - window_size if slot >= window_size else slot])
        chosen[i] = rank
        roles[rank] = _SAMPLED
    state[_MT_INDEX] = index


@njit(cache=True)
def _ks_steps(state, params):
    """KS distance, in steps of 1 / stat_size, between the sample and the recent values: one pass
    over the sorted window counting both (values in neither only repeat a previous count)."""
    window_size = int(params[_WINDOW_SIZE])
    values = _region(state, params, _OFF_VALUES, window_size)
    roles = _region(state, params, _OFF_ROLES, window_size)
    whole_half = params[_SAMPLING] == _WHOLE_HALF
    sample_role = _OLDER if whole_half else _SAMPLED
    in_sample = 0
    in_recent = 0
    widest = 0
    previous = -np.inf
    for rank in range(window_size):
        value = values[rank]
        # counts of everything <= previous: a candidate only once every tie is consumed
        gap = abs(in_sample - in_recent) if value > previous else 0
        widest = max(widest, gap)
        previous = value
        role = roles[rank]
        in_recent += int(role == _RECENT)
        in_sample += int(role == sample_role)
    if not whole_half:
        stat_size = int(params[_STAT_SIZE])
        chosen = _region(state, params, _OFF_CHOSEN, stat_size)
        for i in range(stat_size):
            roles[int(chosen[i])] = _OLDER
    return widest  # after the last value both counts are stat_size


@njit(cache=True)
def _reset(state):
    state[DRIFT] = 0.0
    state[_N] = 0.0
    state[_P_VALUE] = 0.0
    state[_COUNT] = 0.0
    state[_MT_INDEX] = -1.0  # river: self._rng = random.Random(self.seed)


@njit(cache=True, inline="always", error_model="numpy")
def _update(state, params, x):
    if state[DRIFT] != 0.0:
        _reset(state)  # river resets on the update after a detection
    state[_N] += 1.0
    window_size = int(params[_WINDOW_SIZE])
    drift = False
    if _push(state, params, x) >= window_size:
        if params[_SAMPLING] != _WHOLE_HALF:
            _mark_sample(state, params)
        h = _ks_steps(state, params)
        stat_size = int(params[_STAT_SIZE])
        p_value = params[int(params[_OFF_P_TABLE]) + h]
        state[_P_VALUE] = p_value
        drift = p_value <= params[_ALPHA] and h * 1.0 / stat_size > 0.1
    state[DRIFT] = 1.0 if drift else 0.0
    return drift


@njit(cache=True, error_model="numpy")
def _feed_runs(states, params, streams, bounds, values):
    """Feed run ``k``, ``values[bounds[k]:bounds[k + 1]]``, to ``states[streams[k]]``; returns the
    indices in ``values`` where drift was signalled. Stream by stream, a window (kilobytes) stays
    in cache for its whole run, and its row view is made once per run, not once per value."""
    found = np.empty(len(values), np.int64)
    n_found = 0
    for k in range(len(streams)):
        state = states[streams[k]]
        for j in range(bounds[k], bounds[k + 1]):
            if _update(state, params, values[j]):
                found[n_found] = j
                n_found += 1
    return found[:n_found]


def _bank_update_many(states, params, stream_ids, values):
    return update_in_runs(_feed_runs, None, states, params, stream_ids, values)


def _seed_key(seed: int) -> list[int]:
    """CPython's random_seed: the absolute value's 32-bit words, least significant first."""
    magnitude = abs(seed)
    words = max(1, (magnitude.bit_length() + 31) // 32)
    return [(magnitude >> (32 * i)) & _MASK32 for i in range(words)]


def _sampling_branch(population: int, k: int) -> float:
    if population == k:
        return _WHOLE_HALF
    setsize = 21  # CPython 3.11 Random.sample, verbatim
    if k > 5:
        setsize += 4 ** math.ceil(math.log(k * 3, 4))
    return _POOL if population <= setsize else _SET


class KSWIN(StreamDetector):
    """Kolmogorov-Smirnov windowing, identical in decisions to ``river.drift.KSWIN``.

    Parameters
    ----------
    alpha
        Significance level of the KS test (river advises below 0.01).
    window_size
        Size of the sliding window.
    stat_size
        Size of the recent window tested against an equal-size sample of the older values.
        Must be at most ``window_size / 2`` (river accepts more but fails at the first full window)
        and at most 10,000 (beyond it scipy switches to an asymptotic p-value).
    seed
        Integer seed of the sampling: the same seed draws the same samples as river's
        ``random.Random(seed)``. ``None`` seeds from numba's entropy-seeded generator at every
        reset: detections are then not reproducible (river's ``None`` is not either).
    window
        Values to start the window with (the last ``window_size`` are kept), as in river.

    Notes
    -----
    As in river, the generator is re-seeded at every reset (the update after a detection), and a
    test needs a full window: after a detection nothing is signalled for ``window_size`` values.
    River's defaults fire every few hundred values on data without drift: each update is a test
    at level ``alpha`` and consecutive tests share most of their data. Use :meth:`calibrated`.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors.kswin import KSWIN
    >>> rng = np.random.default_rng(7)
    >>> values = np.concatenate([rng.normal(0, 1, 3000), rng.normal(1, 1, 1000)])
    >>> KSWIN(seed=42).update_many(values)  # river's defaults: 4 false alarms before 3000
    array([ 205,  583, 1877, 2187, 3026, 3364])
    >>> kswin = KSWIN.calibrated()
    >>> kswin.update_many(values)
    array([3187])
    >>> kswin.n  # values since the reset that followed the detection (not enough for a test yet)
    812
    """

    def __init__(
        self,
        alpha: float = 0.005,
        window_size: int = 100,
        stat_size: int = 30,
        seed: int | None = None,
        window=None,
    ):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
        for name, size in (("window_size", window_size), ("stat_size", stat_size)):
            if not isinstance(size, (int, np.integer)) or size < 1:
                raise ValueError(f"{name} must be a positive integer, got {size!r}")
        if 2 * stat_size > window_size:
            raise ValueError(
                f"stat_size ({stat_size}) must be at most half of window_size ({window_size}): "
                "the sample of older values has stat_size values too"
            )
        if stat_size > _MAX_EXACT_STAT_SIZE:
            raise ValueError(f"stat_size above {_MAX_EXACT_STAT_SIZE} is not supported (scipy's test is no longer exact)")
        if window_size >= 2**31:
            raise ValueError(f"window_size must be below 2**31, got {window_size!r}")
        if seed is not None:
            try:
                seed = operator.index(seed)
            except TypeError:
                raise ValueError(f"seed must be an integer or None, got {seed!r}") from None
        initial = np.empty(0) if window is None else np.asarray(list(window), np.float64)[-int(window_size) :]
        check_finite(initial)
        self.alpha = float(alpha)
        self.window_size = int(window_size)
        self.stat_size = int(stat_size)
        self.seed = seed
        self.window = None if window is None else initial.tolist()
        self._params, state_size = self._build_params(initial)
        self._state = self._initial_state(initial, state_size)

    _update = staticmethod(_update)
    _kernel = staticmethod(_bank_update_many)
    _kernel_checks_ids = True

    def _build_params(self, initial: np.ndarray) -> tuple[np.ndarray, int]:
        """The parameter vector (with the state row's layout) and the state row's length."""
        population = self.window_size - self.stat_size
        sampling = _sampling_branch(population, self.stat_size)
        key = _seed_key(self.seed) if self.seed is not None else []
        draws = sampling != _WHOLE_HALF
        sizes = {  # state regions in order
            _OFF_MT: _MT_N if draws else 0,
            _OFF_VALUES: self.window_size,
            _OFF_SLOTS: self.window_size,
            _OFF_RANK_OF: self.window_size,
            _OFF_ROLES: self.window_size,
            _OFF_CHOSEN: self.stat_size if draws else 0,
            _OFF_SCRATCH: population if draws else 0,
        }
        header = np.zeros(_PARAM_HEADER, np.float64)
        offset = _HEADER
        for region, size in sizes.items():
            header[region] = offset
            offset += size
        header[_ALPHA] = self.alpha
        header[_WINDOW_SIZE] = self.window_size
        header[_STAT_SIZE] = self.stat_size
        header[_SAMPLING] = sampling
        header[_SEEDED] = self.seed is not None
        header[_SEED_SIGN] = -1.0 if self.seed is not None and self.seed < 0 else 1.0
        header[_N_KEY] = len(key)
        header[_N_INITIAL] = len(initial)
        header[_OFF_KEY] = _PARAM_HEADER
        header[_OFF_INITIAL] = _PARAM_HEADER + len(key)
        header[_OFF_P_TABLE] = _PARAM_HEADER + len(key) + len(initial)
        tables = [np.asarray(key, np.float64), initial, _p_value_table(self.stat_size)]
        return np.concatenate([header, *tables]), offset

    def _initial_state(self, initial: np.ndarray, size: int) -> np.ndarray:
        params = self._params
        state = np.zeros(size, np.float64)
        state[_MT_INDEX] = -1.0
        for x in initial:
            _push(state, params, x)
        return state

    @classmethod
    def calibrated(cls, **overrides) -> "KSWIN":
        """driftmeter's production default: windows of 500 values and a multiplicity-corrected alpha.

        Every update is a test, so river's ``alpha=0.005`` means a false alarm every few hundred
        values; ``alpha=1e-6`` is a Bonferroni-style correction for the ~10**6 (strongly
        correlated) tests per million values, confirmed by measurement. With 30 values a KS test
        cannot reach such a level on a 0.5 sigma shift, hence ``stat_size=500``; with
        ``window_size == 2 * stat_size`` the sample is the whole older half (no random draws:
        reproducible without a seed; ~0.5M updates/s; 32 KB of state per stream).

        Measured by ``python -m benchmarks.calibration`` (20 seeded N(0, 1) streams, 10M values):
        no false alarm (river's defaults: ~1,300 per 1M values). Delay on a +0.5 sigma shift:
        median 372 values (90th percentile 467; 1 change in 20 missed: the test only compares
        adjacent windows, so a change must show within ~1,000 values); on sigma 1 -> 2: 425.
        Drifts slower than the window (+0.5 sigma over 10,000 values) are never signalled: use
        ADWIN or :meth:`PageHinkley.calibrated` for those. See ``benchmarks/RESULTS.md``.

        >>> KSWIN.calibrated()
        KSWIN(alpha=1e-06, window_size=1000, stat_size=500, seed=None, window=None)
        """
        params = dict(alpha=1e-6, window_size=1000, stat_size=500, seed=None, window=None)
        params.update(overrides)
        return cls(**params)

    def _restore(self, params: np.ndarray, state: np.ndarray) -> None:
        self.alpha = float(params[_ALPHA])
        self.window_size = int(params[_WINDOW_SIZE])
        self.stat_size = int(params[_STAT_SIZE])
        if params[_SEEDED]:
            words = params[int(params[_OFF_KEY]) : int(params[_OFF_KEY]) + int(params[_N_KEY])]
            self.seed = int(params[_SEED_SIGN]) * sum(int(w) << (32 * i) for i, w in enumerate(words))
        else:
            self.seed = None
        start = int(params[_OFF_INITIAL])
        initial = params[start : start + int(params[_N_INITIAL])]
        self.window = initial.tolist() if len(initial) else None
        self._params = params
        self._state = state

    def _public_params(self) -> dict:
        return dict(
            alpha=self.alpha,
            window_size=self.window_size,
            stat_size=self.stat_size,
            seed=self.seed,
            window=self.window,
        )

    @property
    def p_value(self) -> float:
        """p-value of the last test (0 before the first full window since a reset, as in river)."""
        return float(self._state[_P_VALUE])

    @property
    def n(self) -> int:
        """Updates since the last reset (river's ``n``)."""
        return int(self._state[_N])


class KSWINBank(DetectorBank):
    """Many independent :class:`KSWIN` streams updated in one numba call.

    With an integer ``seed`` every stream draws the sequence of samples a lone ``KSWIN(seed=...)``
    would, so each stream's detections equal a single detector's.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors.kswin import KSWINBank
    >>> rng = np.random.default_rng(7)
    >>> bank = KSWINBank(n_streams=2, alpha=0.0001, seed=42)
    >>> ids = np.tile([0, 1], 1000)
    >>> values = rng.normal(0, 1, 2000) + np.where((ids == 1) & (np.arange(2000) >= 1200), 3.0, 0.0)
    >>> bank.update_many(ids, values)  # (stream ids, positions in values)
    (array([1]), array([1235]))
    """

    detector = KSWIN
