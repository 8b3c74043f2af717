"""How a bank feeds a batch: run by run when a stream's values come together, else value by value.

A stream's result depends only on its own values in their order, so a bank is free to choose how
it walks a batch:

- *Runs* (a lone detector's single run, a bank fed column by column): each run of one stream's
  consecutive values is fed with the stream's state in local variables, loaded and stored once.
  Nothing is copied.
- *Value by value* (interleaved streams): each value loads its stream's row, steps it and stores
  it back. The next value is usually another stream's, so the processor overlaps consecutive
  updates instead of waiting on one stream's chain of divisions and square roots. The row's loads
  and stores are work a lone detector does not do, and stepping one value at a time such a bank
  ran at 0.7-0.9 of a lone detector's rate. PageHinkley, DDM and HDDM_W therefore step two values
  at once wherever they are two streams' on their detector's common path (``_step_pair``, over
  :mod:`detectors._pairs`): one 2-wide instruction per operation, so a division or a square root
  costs two streams what it costs a lone detector for one, which pays for the loads and stores.
  EDDM's common value (a correct prediction) only counts, so its bank spends on it one integer
  compare and one addition in memory: streams with a detection pending start the batch afresh,
  their rows set aside (``eddm._feed_each``), so no value looks at a flag. Regrouping such a batch by stream first costs a few ns per
  value, as much as an update, and was slower still (``benchmarks/RESULTS.md`` has the figures).
  KSWIN is the exception: its window is kilobytes, so value by value every update would fetch a
  window from memory; it regroups the batch by stream with a counting sort and feeds the groups
  as runs.

A detector module built on this one has two kernels: ``_feed_runs(states, params, streams, bounds,
values)`` feeds run ``k``, ``values[bounds[k]:bounds[k + 1]]``, to ``states[streams[k]]``, and
``_feed_each(states, params, stream_ids, values)`` feeds ``values[i]`` to
``states[stream_ids[i]]`` (KSWIN has none); each returns the indices in ``values`` where drift was signalled.
Both loops are written out in each module around its own ``_step`` (and ``_step_pair``): numba
does not cache a kernel that takes a jitted function as an argument, and the worker loads its
kernels from the cache. Each reads its parameter vector into locals once (``_parameters``): the
stores into the state matrix could alias it, so read in the loop it would be reloaded at every value.
:func:`update_in_runs` picks one in Python, not inside the detector's kernel, on purpose: numba's
on-disk cache only notices edits to a kernel's own file, so a kernel calling :func:`_checked_runs`
would go on running a stale compiled copy of it after this module changes (the pair operations of
:mod:`detectors._pairs` are compiled into the kernels that use them, with the same caveat).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Below this mean length a batch is fed value by value: a run costs a state load and store (tens
# of cycles), which long runs spread over their values.
_MIN_MEAN_RUN = 16


@njit(cache=True)
def _checked_runs(stream_ids, n_streams):
    """The batch's runs of equal consecutive ids, when they are long enough to feed run by run,
    and whether every id is in ``[0, n_streams)``, in one pass over the ids.

    Returns ``(streams, bounds, in_range)``: run ``k`` is positions ``bounds[k]:bounds[k + 1]``,
    for stream ``streams[k]``. When the runs average fewer than ``_MIN_MEAN_RUN`` values,
    ``bounds`` is empty: the batch is to be fed value by value (the pass leaves the runs as soon
    as they are too many; the rest of the ids is then only checked).

    Examples
    --------
    >>> import numpy as np
    >>> _checked_runs(np.repeat([1, 0], 20), 2)
    (array([1, 0]), array([ 0, 20, 40]), True)
    >>> _checked_runs(np.array([2, 0, 2, 2]), 3)  # interleaved: no runs
    (array([], dtype=int64), array([], dtype=int64), True)
    >>> _checked_runs(np.array([2, 0, 2, -1]), 3)  # as unsigned, a negative id is out of range
    (array([], dtype=int64), array([], dtype=int64), False)
    """
    n = len(stream_ids)
    ids = stream_ids.view(np.uint64)
    limit = np.uint64(n_streams)
    most_runs = max(n, _MIN_MEAN_RUN) // _MIN_MEAN_RUN
    streams = np.empty(most_runs, np.int64)
    bounds = np.empty(most_runs + 1, np.int64)
    k = 0
    out_of_range = False
    for i in range(n):
        out_of_range |= ids[i] >= limit
        if i == 0 or ids[i] != ids[i - 1]:
            if k == most_runs:
                for j in range(i, n):
                    out_of_range |= ids[j] >= limit
                return streams[:0], bounds[:0], not out_of_range
            streams[k] = stream_ids[i]
            bounds[k] = i
            k += 1
    bounds[k] = n
    return streams[:k], bounds[: k + 1], not out_of_range


@njit(cache=True)
def _by_stream(stream_ids, values, n_streams):
    """The batch regrouped into one run per stream, each stream's values in arrival order.

    Returns ``(streams, bounds, run_values, positions)``: run ``k`` is
    ``run_values[bounds[k]:bounds[k + 1]]``, for stream ``streams[k]``, and ``positions[j]`` is
    the index in ``values`` of ``run_values[j]`` (a stable counting sort).

    Examples
    --------
    >>> import numpy as np
    >>> _by_stream(np.array([2, 0, 2, 2]), np.array([10.0, 11.0, 12.0, 13.0]), 3)
    (array([0, 2]), array([0, 1, 4]), array([11., 10., 12., 13.]), array([1, 0, 2, 3]))
    """
    n = len(stream_ids)
    counts = np.zeros(n_streams + 1, np.int64)
    for s in stream_ids:
        counts[s + 1] += 1
    n_runs = 0
    for s in range(n_streams):
        n_runs += counts[s + 1] > 0
        counts[s + 1] += counts[s]
    streams = np.empty(n_runs, np.int64)
    bounds = np.empty(n_runs + 1, np.int64)
    k = 0
    for s in range(n_streams):
        if counts[s + 1] > counts[s]:
            streams[k] = s
            bounds[k] = counts[s]
            k += 1
    bounds[n_runs] = n
    run_values = np.empty(n, np.float64)
    positions = np.empty(n, np.int64)
    fill = counts[:-1]
    for i in range(n):
        k = fill[stream_ids[i]]
        run_values[k] = values[i]
        positions[k] = i
        fill[stream_ids[i]] = k + 1
    return streams, bounds, run_values, positions


def update_in_runs(feed_runs, feed_each, states, params, stream_ids, values) -> np.ndarray:
    """Feed a bank's batch to a detector's kernels, run by run or value by value.

    With ``feed_each`` None, a batch of short runs is regrouped by stream and fed as runs. Every
    id must be a row of ``states``: the ids are checked in the pass that finds their runs, and a
    ``ValueError`` is raised before any update otherwise.

    Returns the int64 indices in ``values`` where drift was signalled, in increasing order.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors.page_hinkley import PageHinkley, _feed_each, _feed_runs
    >>> detector = PageHinkley(min_instances=1, delta=0.0, threshold=2.5, alpha=1.0)
    >>> states = np.tile(detector._state, (2, 1))
    >>> ids = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    >>> values = np.array([0.0, 0.0, 0.0, 5.0, 0.0, 5.0, 5.0, 5.0])
    >>> update_in_runs(_feed_runs, _feed_each, states, detector._params, ids, values)  # stream 1 moves first
    array([5, 6])
    """
    streams, bounds, in_range = _checked_runs(stream_ids, len(states))
    if not in_range:
        raise ValueError(f"stream id out of range [0, {len(states)})")
    if len(bounds):
        found = feed_runs(states, params, streams, bounds, values)
    elif feed_each is not None:
        return feed_each(states, params, stream_ids, values)
    else:
        streams, bounds, run_values, positions = _by_stream(stream_ids, values, len(states))
        found = positions[feed_runs(states, params, streams, bounds, run_values)]
    found.sort()  # runs fed in lockstep report their detections out of order
    return found
