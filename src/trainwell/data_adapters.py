"""Data that is not one array in memory: Python generators, ``PyDataset``, torch ``Dataset``/``DataLoader``.

``fit``, ``evaluate`` and ``predict`` take these as ``x``. A ``BatchStream`` serves their raw
batches epoch after epoch the way Keras's ``EpochIterator`` does:

- a ``PyDataset`` (Keras 3; ``Sequence`` is its Keras 2 name) gives ``len(ds)`` batches per
  epoch, read by index (in a shuffled order when ``shuffle=True``), then ``on_epoch_end()``;
- a torch map-style ``Dataset`` is batched here (``batch_size`` rows, shuffled per epoch);
- a ``DataLoader`` or a generator is iterated as it is (its own order).

``steps_per_epoch`` takes that many batches per epoch and carries on from where the previous
epoch stopped (Keras's meaning); a source that runs out mid-epoch ends the epoch with a warning,
and one that yields nothing stops training. Under ``strategy='ddp'`` each process reads its own
batches: rank r of N takes batches r, r + N, ... (indexed sources read only those; iterated ones
skip the others), with the same number of steps on every rank.

Batches stay as the source gives them (``(x, y)``, ``(x, y, sample_weight)`` or ``x``); the
training loop turns them into tensors.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate
from torch.utils.data.distributed import DistributedSampler

from ._errors import ConfigError, DataError, check_positive_int, describe

RAN_OUT = ("Your input ran out of data; interrupting training. Make sure that your dataset or generator can "
           "generate at least `steps_per_epoch * epochs` batches.")


class PyDataset:
    """Base class for data read one batch at a time (Keras 3's ``keras.utils.PyDataset``).

    Subclasses implement ``__len__`` (the number of batches per epoch) and ``__getitem__(index)``
    returning batch ``index`` as ``(x, y)``, ``(x, y, sample_weight)`` or, for ``predict``, ``x``.
    ``on_epoch_end()`` runs after every epoch (reshuffle or reload there).

    Args:
        workers, use_multiprocessing, max_queue_size: accepted for Keras compatibility; trainwell
            reads the batches in the training process, one at a time, in order.

    Example:
        >>> class Halves(PyDataset):
        ...     def __len__(self):
        ...         return 2
        ...     def __getitem__(self, index):
        ...         x = np.full((4, 3), float(index), dtype="float32")
        ...         return x, x.sum(axis=1)
        >>> len(Halves()), Halves()[1][1].tolist()
        (2, [3.0, 3.0, 3.0, 3.0])
    """

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10):
        self.workers = workers
        self.use_multiprocessing = use_multiprocessing
        self.max_queue_size = max_queue_size

    def __getitem__(self, index: int):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__(index), returning a "
                                  "batch.")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__() (the number of batches).")

    @property
    def num_batches(self) -> int:
        """The number of batches per epoch (``len(self)``), as Keras 3 names it."""
        return len(self)

    def on_epoch_begin(self) -> None:
        """Called before each epoch; does nothing unless overridden."""

    def on_epoch_end(self) -> None:
        """Called after each epoch; does nothing unless overridden."""


def is_batch_source(x) -> bool:
    """Whether ``x`` is batched data (a PyDataset, a torch Dataset/DataLoader or an iterator), not arrays."""
    if isinstance(x, (PyDataset, Dataset, DataLoader)):
        return True
    return isinstance(x, Iterator) and not isinstance(x, (np.ndarray, torch.Tensor))


def split_batch(batch, where: str) -> tuple:
    """``(x, y, sample_weight)`` of one raw batch (missing parts None).

    Raises:
        DataError: for a tuple of another length.
    """
    if isinstance(batch, dict):
        raise DataError(f"{where}: batches are dicts; give tuples (x, y) or (x, y, sample_weight) instead.")
    if not isinstance(batch, (tuple, list)):
        return batch, None, None
    if not 1 <= len(batch) <= 3:
        raise DataError(f"{where}: a batch must be x, (x, y) or (x, y, sample_weight), received a "
                        f"{type(batch).__name__} of {len(batch)} items.")
    return (*batch, *([None] * (3 - len(batch))))


class BatchStream:
    """Raw batches of one source, one epoch at a time, as Keras serves them (see the module doc).

    Args:
        data: a ``PyDataset``, torch ``Dataset`` or ``DataLoader``, an iterator of batches, or a
            tuple of equal-length tensors (arrays given with ``steps_per_epoch``).
        batch_size: rows per batch for a torch ``Dataset`` or tensors (ignored otherwise).
        shuffle: shuffle the batch order (PyDataset) or the rows (Dataset, tensors) each pass.
        steps: batches per epoch; None means one whole pass.
        seed: base seed of the per-pass shuffles (pass k uses seed + k).
        rank, world_size: this process's shard under DDP.
        name: the argument name for messages (``'x'``, ``'validation_data'``).

    Raises:
        ConfigError: for ``steps`` that is not a positive integer, or a generator under DDP
            without ``steps``.
    """

    def __init__(self, data, *, batch_size: int = 32, shuffle=False, steps=None, seed: int = 0, rank: int = 0,
                 world_size: int = 1, name: str = "x"):
        self.data, self.name = data, name
        self.steps = None if steps is None else check_positive_int(steps, "steps", name)
        self.batch_size, self.shuffle, self.seed = batch_size, bool(shuffle), seed
        self.rank, self.world_size = rank, world_size
        self.prepared = isinstance(data, tuple)  # tensors the loop has already checked
        self.indexed = isinstance(data, (PyDataset, tuple)) or (
            isinstance(data, Dataset) and not isinstance(data, IterableDataset))
        self._pass_number = 0
        self._current: Iterator | None = None
        self._seen = 0
        self._peeked: list = []
        self.ran_out = False
        self.shard(rank, world_size)

    def shard(self, rank: int, world_size: int) -> None:
        """Read only process ``rank``'s batches of ``world_size`` from now on (DDP).

        Raises:
            ConfigError: a source of unknown length under DDP without ``steps``.
        """
        self.rank, self.world_size = rank, world_size
        self.length = self._length()  # batches in one whole pass on this process (None: unknown)
        if world_size > 1 and self.length is None and self.steps is None:
            raise ConfigError(f"`{self.name}`: under strategy='ddp' a generator or iterable needs "
                              "`steps_per_epoch`, so that every process runs the same number of steps.")
        if world_size > 1 and self._current is not None:
            if self.indexed:  # start a fresh, sharded pass
                self._current, self._peeked = None, []
            else:  # keep the batch already read; this rank takes every world_size-th from here
                rest = itertools.chain(self._peeked, self._current)
                self._current, self._peeked = itertools.islice(rest, rank, None, world_size), []

    def _length(self) -> int | None:
        data = self.data
        if isinstance(data, tuple):
            n = math.ceil(data[0].shape[0] / self.batch_size)
        elif isinstance(data, PyDataset):
            n = len(data)
        elif self.indexed:
            n = math.ceil(len(data) / self.batch_size)
        elif isinstance(data, DataLoader):
            try:
                n = len(data)
            except TypeError:  # an IterableDataset without __len__
                return None
            if self._sharded_by_user():
                return n
        else:
            return None
        # Per process under DDP: indexed sources pad to ceil(n / N) by wrapping around, as
        # DistributedSampler does; iterated ones drop the remainder (they cannot go back).
        return -(-n // self.world_size) if self.indexed else n // self.world_size

    def _sharded_by_user(self) -> bool:
        return isinstance(self.data, DataLoader) and isinstance(self.data.sampler, DistributedSampler)

    @property
    def num_batches(self) -> int | None:
        """Batches per epoch on this process: ``steps`` if given, else one pass (None when unknown)."""
        return self.steps or self.length

    # -- passes ----------------------------------------------------------------------------
    def _order(self, n: int) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self._pass_number)
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        if self.world_size > 1:
            per_rank = -(-n // self.world_size)
            order = (order * self.world_size)[: per_rank * self.world_size]  # pad by wrapping around
            order = order[self.rank::self.world_size]
        return order

    def _one_pass(self) -> Iterator:
        data = self.data
        if isinstance(data, PyDataset):
            for index in self._order(len(data)):
                yield data[index]
        elif isinstance(data, tuple):
            for index in self._order(math.ceil(data[0].shape[0] / self.batch_size)):
                rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
                yield tuple(None if t is None else t[rows] for t in data)
        elif self.indexed:
            rows = self._row_order(len(data))
            for start in range(0, len(rows), self.batch_size):
                yield default_collate([data[i] for i in rows[start:start + self.batch_size]])
        else:
            batches = iter(data)
            if self.world_size > 1 and not self._sharded_by_user():
                batches = itertools.islice(batches, self.rank, None, self.world_size)
            yield from batches

    def _row_order(self, n: int) -> list[int]:
        """Rows of a torch Dataset for this pass: shuffled, then this rank's batches of them."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self._pass_number)
            rows = torch.randperm(n, generator=generator).tolist()
        else:
            rows = list(range(n))
        if self.world_size == 1:
            return rows
        batches = [rows[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        per_rank = -(-len(batches) // self.world_size)
        batches = (batches * self.world_size)[: per_rank * self.world_size][self.rank::self.world_size]
        return [i for batch in batches for i in batch]

    def _new_pass(self) -> None:
        self._current, self._seen = self._one_pass(), 0
        self._pass_number += 1

    # -- epochs ----------------------------------------------------------------------------
    def peek(self):
        """The first batch of the next epoch, read now and served again by ``epoch()``.

        Raises:
            DataError: the source yields no batch at all.
        """
        if not self._peeked:
            if self._current is None:
                self._new_pass()
            try:
                self._peeked.append(next(self._current))
            except StopIteration:
                raise DataError(f"`{self.name}` yielded no batches. Give it data, or check that a generator "
                                "was not already used up by an earlier call.") from None
        return self._peeked[0]

    def probe(self, batches: int = 4) -> list:
        """Up to ``batches`` raw batches for the training doctor, without using up the source.

        Indexed sources are read by index; iterated ones only give the batch ``peek`` read.
        """
        if isinstance(self.data, PyDataset):
            return [self.data[i] for i in range(min(batches, len(self.data)))]
        if isinstance(self.data, tuple) or self.indexed:
            return list(itertools.islice(self._one_pass_unsharded(), batches))
        return [self.peek()]

    def _one_pass_unsharded(self) -> Iterator:
        rank, world, shuffle = self.rank, self.world_size, self.shuffle
        self.rank, self.world_size, self.shuffle = 0, 1, False
        try:
            yield from self._one_pass()
        finally:
            self.rank, self.world_size, self.shuffle = rank, world, shuffle

    def restart(self) -> None:
        """Begin the next epoch with a new pass, as Keras resets its iterator for each evaluation."""
        if not self._peeked:
            self._current = None

    def epoch(self) -> Iterator:
        """This epoch's raw batches: ``steps`` of them (continuing the current pass), or one pass."""
        if isinstance(self.data, PyDataset):
            self.data.on_epoch_begin()
        if self._current is None or (self.steps is None and not self._peeked):
            self._new_pass()
        taken = 0
        while self.steps is None or taken < self.steps:
            if self._peeked:
                batch = self._peeked.pop()
            else:
                if self.steps is not None and self.length is not None and self._seen >= self.length:
                    warnings.warn(RAN_OUT, UserWarning, stacklevel=4)
                    break
                try:
                    batch = next(self._current)
                except StopIteration:  # a generator used up (an empty epoch stops the fit)
                    if self.steps is not None or taken == 0:
                        warnings.warn(RAN_OUT, UserWarning, stacklevel=4)
                    self._current = None
                    break
            self._seen += 1
            taken += 1
            yield batch
        if taken == 0:
            self.ran_out = True
        if self.length is not None and self._seen >= self.length:
            self._current = None  # the pass is over: the next epoch starts a new one
        if isinstance(self.data, PyDataset):
            self.data.on_epoch_end()


def arrays_stream(tensors: tuple, **kwargs) -> BatchStream:
    """A ``BatchStream`` over equal-length tensors (``None`` entries stay None in every batch)."""
    n = tensors[0].shape[0]
    for t in tensors[1:]:
        if t is not None and t.shape[0] != n:
            raise DataError(f"`{kwargs.get('name', 'x')}`: arrays of {n} and {t.shape[0]} rows. "
                            "Give them equal lengths.")
    return BatchStream(tuple(tensors), **kwargs)


def check_no_targets(y, sample_weight, x, where: str) -> None:
    """Keras refuses ``y``/``sample_weight`` next to batched data: the batches carry them.

    Raises:
        ConfigError: if either is given.
    """
    for argument, value in (("y", y), ("sample_weight", sample_weight)):
        if value is not None:
            raise ConfigError(
                f"{where}: `{argument}` must be None when x is a {type(x).__name__}, received "
                f"{describe(value)}. "
                "The batches carry the targets: yield (x, y) or (x, y, sample_weight) from it."
            )
