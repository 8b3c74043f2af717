"""Fetched Kafka records as per-partition batches with columns, not one object per record.

The worker's first stage. aiokafka's ``getmany`` walks every record through a generator and wraps
it in a ``ConsumerRecord`` (eleven fields, headers copied) before the worker reads four of them:
a quarter of the cost worker's time in the profile of 2026-12-04. :class:`BatchConsumer` keeps
aiokafka's fetching, positions, rebalancing and read-committed filtering, and changes one thing:
a partition's fetched data is taken a whole record batch at a time, as aiokafka's own (C) record
objects, and handed out as :class:`Records`, whose columns (values, keys, offsets) are built
once per partition and fetch.

It hooks into aiokafka 0.14's fetcher at private points, on this consumer's instances only
(faust's consumers in the same process keep the stock classes): the fetcher's class, and each new
fetch result's records and ``getall``. ``tests/test_fetch.py`` checks, on the
real broker, that the hook is in place and that records, positions and aborted transactions
come out exactly as aiokafka's own path gives them; pin aiokafka and rerun it before upgrading.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from inspect import GEN_CREATED, getgeneratorstate
from operator import attrgetter
from types import MethodType

import numpy as np
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, Fetcher, PartitionRecords
from aiokafka.errors import CorruptRecordException

_offset = attrgetter("offset")


class Records(Sequence):
    """The records of one partition in one fetch, in offset order, with their columns.

    Any record objects with ``key``, ``value``, ``offset`` and ``timestamp`` will do (tests and
    the warm-up pass named tuples); columns are computed on first use.

    Examples
    --------
    >>> from collections import namedtuple
    >>> Record = namedtuple("Record", "key value offset timestamp")
    >>> records = Records([Record(b"acme", b"{}", 7, 1000), Record(None, b"[]", 8, 1001)])
    >>> len(records), records.values, records.keys, records.offsets.tolist(), records[-1].offset
    (2, [b'{}', b'[]'], [b'acme', None], [7, 8], 8)
    >>> records.since(8).values
    [b'[]']
    """

    __slots__ = ("_records", "__dict__")

    def __init__(self, records: list):
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i):
        return self._records[i]

    def __iter__(self):
        return iter(self._records)

    @cached_property
    def values(self) -> list:
        return [r.value for r in self._records]

    @cached_property
    def keys(self) -> list:
        return [r.key for r in self._records]

    @cached_property
    def offsets(self) -> np.ndarray:
        return np.fromiter(map(_offset, self._records), np.int64, len(self._records))

    def since(self, offset: int) -> "Records":
        """The records at ``offset`` or after."""
        if not self._records or self._records[0].offset >= offset:
            return self
        return Records(self._records[int(np.searchsorted(self.offsets, offset)):])


def as_records(records) -> Records:
    """``records`` as :class:`Records` (a plain sequence of record objects is wrapped)."""
    return records if isinstance(records, Records) else Records(list(records))


class _BatchPartitionRecords(PartitionRecords):
    """A partition's fetched data, taken a record batch at a time (see ``take``).

    The batch filtering is aiokafka's ``_unpack_records`` (CRC, read-committed aborted
    transactions, control batches) with the per-record generator replaced by whole batches.
    """

    def start_batches(self) -> None:
        self._pending: list = []  # records of the current batch not handed out yet
        self._taken = 0
        self._batch_next_offset = 0  # the offset after the current batch

    def take(self, limit: int) -> list | None:
        """Up to ``limit`` records in offset order; None once the data is used up."""
        while self._taken == len(self._pending):
            batch = self._next_data_batch()
            if batch is None:
                return None
            records = list(batch)
            # A fetch can start inside a batch (and old formats resend compressed sets).
            if records and records[0].offset < self.next_fetch_offset:
                records = [r for r in records if r.offset >= self.next_fetch_offset]
            self._pending, self._taken, self._batch_next_offset = records, 0, batch.next_offset
            if not records:
                self.next_fetch_offset = batch.next_offset
        start = self._taken
        self._taken = end = min(len(self._pending), start + limit)
        taken = self._pending[start:end]
        # v2 batches keep their last offset through compaction: a used-up batch moves the position past it.
        self.next_fetch_offset = self._batch_next_offset if end == len(self._pending) else taken[-1].offset + 1
        return taken

    def _next_data_batch(self):
        records = self._records
        while records.has_next():
            batch = records.next_batch()
            if self._check_crcs and not batch.validate_crc():
                raise CorruptRecordException(f"Invalid CRC - {self._tp}")
            if self._isolation_level == READ_COMMITTED and batch.producer_id is not None:
                self._consume_aborted_up_to(batch.base_offset)
                if batch.is_control_batch and self._contains_abort_marker(batch):
                    self._aborted_producers.discard(batch.producer_id)
                if batch.is_transactional and batch.producer_id in self._aborted_producers:
                    self.next_fetch_offset = batch.next_offset
                    continue
            if batch.is_control_batch:
                self.next_fetch_offset = batch.next_offset
                continue
            return batch
        return None


def _getall_batches(self: FetchResult, max_records=None):
    """``FetchResult.getall`` over :class:`_BatchPartitionRecords`: the records as one
    :class:`Records` (bound to each result, which aiokafka requires to stay a ``FetchResult``)."""
    tp = self._topic_partition
    if not self.check_assignment(tp) or not self.has_more():
        return []
    taken: list = []
    room = max_records if max_records is not None else float("inf")
    while room:
        chunk = self._partition_records.take(room)
        if chunk is None:
            self._update_position()
            self._partition_records = None
            break
        taken += chunk
        room -= len(chunk)
    else:
        self._update_position()
    return Records(taken) if taken else []


class _BatchFetcher(Fetcher):
    async def _proc_fetch_request(self, assignment, node_id, request):
        needs_wakeup = await super()._proc_fetch_request(assignment, node_id, request)
        for result in self._records.values():
            # New data nobody has started reading: results converted earlier keep their place in
            # a half-read batch, and one read through the stock path before the hook stays as it is.
            records = getattr(result, "_partition_records", None)
            unread = getattr(records, "_records_iterator", None)
            if type(records) is PartitionRecords and unread is not None and getgeneratorstate(unread) == GEN_CREATED:
                records.__class__ = _BatchPartitionRecords
                records.start_batches()
                result.getall = MethodType(_getall_batches, result)
        return needs_wakeup


class BatchConsumer(AIOKafkaConsumer):
    """An :class:`aiokafka.AIOKafkaConsumer` whose ``getmany`` maps each partition to
    :class:`Records` (records with ``key``, ``value``, ``offset`` and ``timestamp``)."""

    async def start(self) -> None:
        await super().start()
        # aiokafka builds its fetcher in start(); its fetch loop looks the method up per request.
        self._fetcher.__class__ = _BatchFetcher
