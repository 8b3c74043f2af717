"""Usage events from wire bytes straight to columns: the cost path's fast decoder.

A usage batch is joined into one byte buffer and read by one numba call that validates every
record against the contract and writes its columns (event time, tokens, provider cost, the
fingerprints of ``(source, id)`` and of ``(customer, model, feature)``, and where the names
are), with no Python object per event. It reads only the plain form that producers write: ASCII
JSON whose strings have no escapes, fields the contract names each given once, integers as
digits, ``time`` as ``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)`` from 1970 on, and ``cost_usd``
as the contract's decimal string.

Every other record, valid or not, is *deferred*: the msgspec decoder (``streams.events``) reads
it and says why it is invalid. The fast reading is therefore never the judge of validity, only a
shortcut for records it fully understands; ``tests/test_wire.py`` checks that every record it
accepts decodes through msgspec to the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from streams.dedup import _U, _murmur3_128
from streams.events import MAX_ID_CHARS, MAX_NAME_CHARS, MAX_TOKENS

# Integer columns of a scan.
TIME_MS, TOKENS, COST_PICO = 0, 1, 6  # TOKENS..TOKENS + 4: the contract's five token fields
_N_INTS = 7
# Name columns: [start, stop) in the joined buffer.
SUBJECT, MODEL, FEATURE = 0, 2, 4
# Fingerprint columns (uint64): (source, id) for dedup, then (customer, model, feature).
EVENT_HI, EVENT_LO, KEY_HI, KEY_LO = range(4)
NO_COST = -1

_LITERALS = [
    # envelope fields, in the order of their bits
    b"specversion", b"type", b"source", b"id", b"time", b"subject", b"data",
    # data fields
    b"model", b"input_tokens", b"output_tokens", b"cache_read_input_tokens", b"cache_creation_input_tokens",
    b"reasoning_output_tokens", b"feature", b"request_id", b"cost_usd",
    # values
    b"1.0", b"driftmeter.usage", b"null", b"default",
]
_LIT = np.frombuffer(b"".join(_LITERALS), np.uint8)
_LIT_END = np.cumsum([len(x) for x in _LITERALS]).astype(np.int64)
_N_ENVELOPE, _N_DATA = 7, 9
_SPECVERSION, _TYPE, _SOURCE, _ID, _TIME, _SUBJECT, _DATA = range(7)
_MODEL, _INPUT, _OUTPUT, _CACHE_READ, _CACHE_CREATION, _REASONING, _FEATURE, _REQUEST_ID, _COST = range(9)
_V_SPEC, _V_TYPE, _V_NULL, _V_DEFAULT = 16, 17, 18, 19
_REQUIRED = (1 << _N_ENVELOPE) - 1
_DATA_REQUIRED = (1 << _MODEL) | (1 << _INPUT) | (1 << _OUTPUT)
_MAX_TOKEN_DIGITS = len(str(MAX_TOKENS))
_DAYS_BEFORE_MONTH = np.array([0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], np.int64)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)


@njit(cache=True, inline="always")
def _lit(k):
    return (_LIT_END[k - 1] if k else 0), _LIT_END[k]


@njit(cache=True)
def _equals(buf, a, b, k):
    lo, hi = _lit(k)
    if b - a != hi - lo:
        return False
    for j in range(b - a):
        if buf[a + j] != _LIT[lo + j]:
            return False
    return True


@njit(cache=True)
def _field(buf, a, b, first, count):
    """Which literal ``first .. first + count - 1`` the name ``buf[a:b]`` is, or -1."""
    for k in range(first, first + count):
        if _equals(buf, a, b, k):
            return k - first
    return -1


@njit(cache=True, inline="always")
def _space(buf, p, end):
    while p < end and (buf[p] == 32 or buf[p] == 10 or buf[p] == 13 or buf[p] == 9):
        p += 1
    return p


@njit(cache=True)
def _string(buf, p, end):
    """A plain string at ``p``: ``(start, stop, next)``, or stop -1 for anything else (an escape,
    a control or non-ASCII byte, not a string at all)."""
    if p >= end or buf[p] != 34:
        return p, -1, p
    q = p + 1
    while q < end:
        c = buf[q]
        if c == 34:
            return p + 1, q, q + 1
        if c == 92 or c < 32 or c > 126:
            return p, -1, p
        q += 1
    return p, -1, p


@njit(cache=True)
def _count(buf, p, end):
    """A token count at ``p`` written as plain digits, within the contract's range:
    ``(value, next)``, or value -1."""
    q = p
    value = 0
    while q < end and 48 <= buf[q] <= 57:
        value = value * 10 + (np.int64(buf[q]) - 48)
        q += 1
        if q - p > _MAX_TOKEN_DIGITS:
            return -1, p
    digits = q - p
    if digits == 0 or (digits > 1 and buf[p] == 48) or value > MAX_TOKENS:
        return -1, p
    # a fraction or an exponent makes it a float: msgspec's to reject
    if q < end and (buf[q] == 46 or buf[q] == 101 or buf[q] == 69):
        return -1, p
    return value, q


@njit(cache=True)
def _digits(buf, a, n):
    value = 0
    for j in range(a, a + n):
        c = buf[j]
        if c < 48 or c > 57:
            return -1
        value = value * 10 + (np.int64(c) - 48)
    return value


@njit(cache=True)
def _time_ms(buf, a, b):
    """``YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)`` as ms since 1970 (floored), or -1."""
    n = b - a
    if n < 20 or buf[a + 4] != 45 or buf[a + 7] != 45 or buf[a + 10] != 84 or buf[a + 13] != 58 or buf[a + 16] != 58:
        return -1
    year, month, day = _digits(buf, a, 4), _digits(buf, a + 5, 2), _digits(buf, a + 8, 2)
    hour, minute, second = _digits(buf, a + 11, 2), _digits(buf, a + 14, 2), _digits(buf, a + 17, 2)
    if year < 1970 or not 1 <= month <= 12 or day < 1 or hour > 23 or minute > 59 or second > 59 or min(hour, minute, second) < 0:
        return -1
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if day > _DAYS_IN_MONTH[month] + (1 if leap and month == 2 else 0):
        return -1
    p = a + 19
    micros = 0
    if buf[p] == 46:
        digits = 0
        p += 1
        while p < b and 48 <= buf[p] <= 57:
            micros = micros * 10 + (np.int64(buf[p]) - 48)
            digits += 1
            p += 1
        if digits == 0 or digits > 6:  # msgspec rounds beyond microseconds: its reading decides
            return -1
        for _ in range(6 - digits):
            micros *= 10
    offset_minutes = 0
    if p == b - 1 and buf[p] == 90:
        pass
    elif p == b - 6 and (buf[p] == 43 or buf[p] == 45) and buf[p + 3] == 58:
        oh, om = _digits(buf, p + 1, 2), _digits(buf, p + 4, 2)
        if oh < 0 or om < 0 or oh > 23 or om > 59:
            return -1
        offset_minutes = (oh * 60 + om) * (1 if buf[p] == 43 else -1)
    else:
        return -1
    y = year - 1
    days = y * 365 + y // 4 - y // 100 + y // 400 - 719162 + _DAYS_BEFORE_MONTH[month] + day - 1
    if leap and month > 2:
        days += 1
    total_us = ((days * 24 + hour) * 60 + minute - offset_minutes) * 60_000_000 + second * 1_000_000 + micros
    if total_us < 0:
        return -1
    return total_us // 1000


@njit(cache=True)
def _usd_pico(buf, a, b):
    """The contract's ``cost_usd`` text (``0`` or ``[1-9][0-9]{0,5}``, then up to 12 decimals) in
    picodollars, or -1."""
    p = a
    units = 0
    while p < b and 48 <= buf[p] <= 57:
        units = units * 10 + (np.int64(buf[p]) - 48)
        p += 1
    whole = p - a
    if whole == 0 or whole > 6 or (whole > 1 and buf[a] == 48):
        return -1
    fraction = 0
    places = 0
    if p < b:
        if buf[p] != 46:
            return -1
        p += 1
        while p < b and 48 <= buf[p] <= 57:
            fraction = fraction * 10 + (np.int64(buf[p]) - 48)
            places += 1
            p += 1
        if p != b or places == 0 or places > 12:
            return -1
    for _ in range(12 - places):
        fraction *= 10
    return units * 1_000_000_000_000 + fraction


@njit(cache=True)
def _name(buf, p, end, limit):
    """A plain string of 1 to ``limit`` characters: ``(start, stop, next)``, stop -1 if not."""
    a, b, q = _string(buf, p, end)
    if b < 0 or b == a or b - a > limit:
        return a, -1, q
    return a, b, q


@njit(cache=True)
def _data(buf, p, end, ints, names):
    """The ``data`` object at ``p``; fills ``ints`` and ``names``; returns the next position, or -1."""
    if p >= end or buf[p] != 123:
        return -1
    p = _space(buf, p + 1, end)
    seen = 0
    names[FEATURE] = names[FEATURE + 1] = -1  # "default"
    ints[COST_PICO] = NO_COST
    for t in range(5):
        ints[TOKENS + t] = 0
    while True:
        a, b, p = _string(buf, p, end)
        if b < 0:
            return -1
        k = _field(buf, a, b, _N_ENVELOPE, _N_DATA)
        if k < 0 or seen & (1 << k):  # an extension field or a repeated one: msgspec's reading
            return -1
        seen |= 1 << k
        p = _space(buf, p, end)
        if p >= end or buf[p] != 58:
            return -1
        p = _space(buf, p + 1, end)
        if k == _MODEL or k == _FEATURE:
            a, b, p = _name(buf, p, end, MAX_NAME_CHARS)
            if b < 0:
                return -1
            column = MODEL if k == _MODEL else FEATURE
            names[column], names[column + 1] = a, b
        elif k == _REQUEST_ID or k == _COST:
            if p + 4 <= end and _equals(buf, p, p + 4, _V_NULL):
                p += 4
            else:
                a, b, p = _name(buf, p, end, MAX_ID_CHARS)
                if b < 0:
                    return -1
                if k == _COST:
                    ints[COST_PICO] = _usd_pico(buf, a, b)
                    if ints[COST_PICO] < 0:
                        return -1
        else:
            value, p = _count(buf, p, end)
            if value < 0:
                return -1
            ints[TOKENS + k - _INPUT] = value
        p = _space(buf, p, end)
        if p < end and buf[p] == 44:
            p = _space(buf, p + 1, end)
            continue
        if p < end and buf[p] == 125 and seen & _DATA_REQUIRED == _DATA_REQUIRED:
            break
        return -1
    # OpenTelemetry's inclusive counts: a subset may not exceed its total (msgspec says which)
    if (ints[TOKENS + 2] + ints[TOKENS + 3] > ints[TOKENS] or ints[TOKENS + 4] > ints[TOKENS + 1]):
        return -1
    return p + 1


@njit(cache=True)
def _event(buf, p, end, ints, names, spans):
    """One record ``buf[p:end]``; fills its columns; returns False to defer it."""
    p = _space(buf, p, end)
    if p >= end or buf[p] != 123:
        return False
    p = _space(buf, p + 1, end)
    seen = 0
    while True:
        a, b, p = _string(buf, p, end)
        if b < 0:
            return False
        k = _field(buf, a, b, 0, _N_ENVELOPE)
        if k < 0 or seen & (1 << k):
            return False
        seen |= 1 << k
        p = _space(buf, p, end)
        if p >= end or buf[p] != 58:
            return False
        p = _space(buf, p + 1, end)
        if k == _DATA:
            p = _data(buf, p, end, ints, names)
            if p < 0:
                return False
        else:
            a, b, p = _name(buf, p, end, MAX_ID_CHARS)
            if b < 0:
                return False
            if k == _SPECVERSION:
                if not _equals(buf, a, b, _V_SPEC):
                    return False
            elif k == _TYPE:
                if not _equals(buf, a, b, _V_TYPE):
                    return False
            elif k == _TIME:
                ints[TIME_MS] = _time_ms(buf, a, b)
                if ints[TIME_MS] < 0:
                    return False
            elif k == _SUBJECT:
                names[SUBJECT], names[SUBJECT + 1] = a, b
            else:  # source or id
                spans[k - _SOURCE, 0], spans[k - _SOURCE, 1] = a, b
        p = _space(buf, p, end)
        if p < end and buf[p] == 44:
            p = _space(buf, p + 1, end)
            continue
        if p < end and buf[p] == 125 and seen == _REQUIRED:
            return _space(buf, p + 1, end) == end
        return False


@njit(cache=True)
def _scan(buf, ends, key_buf, key_ends, max_bytes, ok, ints, names, fps):
    spans = np.empty((2, 2), np.int64)
    zero = _U[0]
    for i in range(len(ends)):
        start = ends[i - 1] if i else 0
        ok[i] = False
        if ends[i] - start > max_bytes or not _event(buf, start, ends[i], ints[i], names[i], spans):
            continue
        # the Kafka key must be the customer id (the subject)
        key_start = key_ends[i - 1] if i else 0
        a, b = names[i, SUBJECT], names[i, SUBJECT + 1]
        if key_ends[i] - key_start != b - a:
            continue
        same = True
        for j in range(b - a):
            if key_buf[key_start + j] != buf[a + j]:
                same = False
                break
        if not same:
            continue
        ok[i] = True
        h1, h2 = _murmur3_128(buf, spans[0, 0], spans[0, 1], zero, zero)
        fps[i, EVENT_HI], fps[i, EVENT_LO] = _murmur3_128(buf, spans[1, 0], spans[1, 1], h1, h2)
        h1, h2 = _murmur3_128(buf, a, b, zero, zero)
        h1, h2 = _murmur3_128(buf, names[i, MODEL], names[i, MODEL + 1], h1, h2)
        if names[i, FEATURE] < 0:
            lo, hi = _lit(_V_DEFAULT)
            fps[i, KEY_HI], fps[i, KEY_LO] = _murmur3_128(_LIT, lo, hi, h1, h2)
        else:
            fps[i, KEY_HI], fps[i, KEY_LO] = _murmur3_128(buf, names[i, FEATURE], names[i, FEATURE + 1], h1, h2)


@dataclass
class UsageColumns:
    """A scanned batch: row ``i`` is record ``i``; only rows with ``ok[i]`` hold values."""

    ok: np.ndarray  # bool: read here; False: left to the msgspec decoder
    ints: np.ndarray  # int64 (n, 7): TIME_MS, the five TOKENS, COST_PICO (NO_COST: none given)
    names: np.ndarray  # int64 (n, 6): [start, stop) of SUBJECT, MODEL, FEATURE (-1: "default")
    fingerprints: np.ndarray  # uint64 (n, 4): EVENT_HI, EVENT_LO, KEY_HI, KEY_LO
    buffer: bytes  # the joined values the spans point into

    def keys(self, rows: np.ndarray) -> list[tuple[str, str, str]]:
        """The (customer, model, feature) of each of ``rows``."""
        # latin-1 maps byte k to character k, so the spans index the text as they index the bytes
        text = self.buffer.decode("latin-1")
        return [(text[c0:c1], text[m0:m1], "default" if f0 < 0 else text[f0:f1])
                for c0, c1, m0, m1, f0, f1 in self.names[rows].tolist()]


def scan_usage(values: list, keys: list, max_bytes: int) -> UsageColumns:
    """Read a batch of ``usage`` message values (and their Kafka keys) into columns.

    Examples
    --------
    >>> raw = (b'{"specversion":"1.0","type":"driftmeter.usage","source":"gw","id":"r-1",'
    ...        b'"time":"2026-11-22T03:00:00.456Z","subject":"acme",'
    ...        b'"data":{"model":"gpt-4o-mini","input_tokens":1200,"output_tokens":300,"cost_usd":"0.000321"}}')
    >>> columns = scan_usage([raw, raw.replace(b'"r-1"', b'"r\\\\u002d2"'), raw], [b"acme", b"acme", b"other"], 1 << 20)
    >>> columns.ok.tolist()  # an escape, and a key that is not the subject: left to msgspec
    [True, False, False]
    >>> columns.ints[0].tolist(), columns.keys([0])
    ([1795316400456, 1200, 300, 0, 0, 0, 321000000], [('acme', 'gpt-4o-mini', 'default')])
    """
    n = len(values)
    try:
        buffer = b"".join(values)
    except TypeError:  # a null record (or a non-bytes value): msgspec's to reject
        values = [v if isinstance(v, bytes) else b"" for v in values]
        buffer = b"".join(values)
    ends = np.cumsum(np.fromiter(map(len, values), np.int64, n))
    keys = [k if isinstance(k, bytes) else b"\xff" for k in keys]  # no key never equals a subject
    key_ends = np.cumsum(np.fromiter(map(len, keys), np.int64, n))
    ok = np.empty(n, np.bool_)
    ints = np.empty((n, _N_INTS), np.int64)
    names = np.empty((n, 6), np.int64)
    fps = np.empty((n, 4), np.uint64)
    _scan(np.frombuffer(buffer, np.uint8), ends, np.frombuffer(b"".join(keys), np.uint8), key_ends, max_bytes,
          ok, ints, names, fps)
    return UsageColumns(ok, ints, names, fps.view(np.int64), buffer)
