"""Training on several processes with PyTorch's own engine: ``torch.distributed`` + DDP.

``fit(..., strategy='ddp')`` runs the same loop in every process that ``torchrun`` starts. This
module holds everything the loop needs for that, so ``training.py`` only calls a few hooks:

- the process group is set up from torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): gloo on CPUs, nccl on GPUs;
- each epoch's row order (the same permutation on every rank, from a seed broadcast by rank 0)
  is split the way ``torch.utils.data.DistributedSampler`` splits it: padded by repeating its
  first rows to a multiple of the world size, then rank ``r`` takes rows ``r, r+W, r+2W, ...``.
  Every rank thus runs the same number of steps, and with ``shuffle=False`` one global batch
  (``batch_size`` rows on each of ``W`` ranks) holds exactly the rows of one single-process
  batch of ``W * batch_size``;
- gradients are averaged by ``DistributedDataParallel``;
- loss and metric sums are all-reduced once per epoch (one collective for all of them);
- only rank 0 prints, writes logs and checkpoints (``for_this_rank``), and a stop asked by any
  rank stops every rank at the same point (``agree``);
- a lost worker becomes a ``DistributedError`` that says so, instead of a hang: collectives
  fail when a peer's connection closes, and at the latest after ``TRAINWELL_DIST_TIMEOUT``
  seconds (default 1800, PyTorch's own default).

Started with plain ``python``, a script with ``strategy='ddp'`` trains in its one process, so
the same script runs on a laptop, on one GPU and under ``torchrun``.

Example:
    >>> shard_rows(torch.arange(5), rank=1, world_size=2).tolist()  # 5 rows, padded to 6
    [1, 3, 0]
"""

from __future__ import annotations

import atexit
import datetime
import inspect
import os

import torch
import torch.distributed as dist
from torch import nn

from ._errors import ConfigError, DataError, DistributedError, unknown_name

STRATEGIES = ("ddp",)
TIMEOUT_ENV = "TRAINWELL_DIST_TIMEOUT"
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_LOST_WORKER = (
    "A collective operation ({what}) failed on rank {rank} of {world}: another process probably died, "
    "was killed or stopped answering (timeout {timeout:g} s, set with the {env} environment variable). "
    "Look for the first error in the other ranks' output; torchrun stops the remaining workers. "
    "Original error: {error}"
)


# ----------------------------------------------------------------------------------------------
# who am I


def is_initialized() -> bool:
    """True when a ``torch.distributed`` process group is running in this process."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank: 0 when no process group is running."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """The number of processes: 1 when no process group is running."""
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0, the process that prints and writes files (and on a single process)."""
    return rank() == 0


def main_print(*args, **kwargs) -> None:
    """``print`` on rank 0 only, so N processes do not print N copies."""
    if is_main_process():
        print(*args, **kwargs)


def check_strategy(strategy) -> str | None:
    """``None`` or a valid strategy name.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones).
    """
    if strategy is None:
        return None
    if not isinstance(strategy, str) or strategy.lower() not in STRATEGIES:
        raise unknown_name("strategy", strategy, STRATEGIES, argument="strategy")
    return strategy.lower()


def launched_by_torchrun() -> bool:
    """True when torchrun's variables are in the environment (``WORLD_SIZE`` is the marker)."""
    return "WORLD_SIZE" in os.environ


def timeout_seconds() -> float:
    """The collective timeout: ``TRAINWELL_DIST_TIMEOUT`` seconds, else PyTorch's 1800."""
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return 1800.0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DistributedError(f"The {TIMEOUT_ENV} environment variable expects a positive number of "
                               f"seconds, received {text!r}. For example {TIMEOUT_ENV}=60.")
    return value


def _env_int(name: str) -> int:
    text = os.environ[name]
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"The {name} environment variable expects an integer, received {text!r}. "
                               "Start the script with torchrun, which sets it.") from None


# ----------------------------------------------------------------------------------------------
# precision: scaling up on one device

PRECISIONS = ("32-true", "bf16-mixed")
# Keras's mixed-precision policy names, so `precision='mixed_bfloat16'` reads as in Keras.
_PRECISION_ALIASES = {"32": "32-true", "float32": "32-true", "mixed_bfloat16": "bf16-mixed"}


def check_precision(precision) -> str:
    """A valid precision name: '32-true' (default, also for None) or 'bf16-mixed'.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones).
    """
    if precision is None:
        return "32-true"
    name = _PRECISION_ALIASES.get(precision, precision) if isinstance(precision, str) else precision
    if name not in PRECISIONS:
        choices = PRECISIONS + tuple(_PRECISION_ALIASES)
        raise unknown_name("precision", precision, choices, argument="precision")
    return name


def autocast_dtype(precision, device: torch.device) -> torch.dtype | None:
    """The dtype the layers run in under ``torch.autocast``, or None for full float32.

    bfloat16 autocast works on CPUs and on GPUs that support bfloat16 (Ampere and newer).

    Raises:
        ConfigError: 'bf16-mixed' on a GPU without bfloat16.
    """
    if check_precision(precision) == "32-true":
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision='bf16-mixed' needs a GPU with bfloat16 support, but "
                          f"{torch.cuda.get_device_name(device)} has none. Use precision='32-true'.")
    return torch.bfloat16


# ----------------------------------------------------------------------------------------------
# set-up


def process_device(device):
    """The device this process should train on: under torchrun with CUDA, the GPU ``LOCAL_RANK``.

    'auto' (or None, with a GPU present) and 'cuda' become ``'cuda:<LOCAL_RANK>'``, so N processes
    on one machine use N GPUs; anything else ('cpu', 'cuda:N') is returned unchanged.

    Raises:
        DistributedError: more processes on this machine than GPUs.
    """
    if not launched_by_torchrun() or not torch.cuda.is_available():
        return device
    if device not in (None, "auto", "cuda"):
        return device
    local = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0
    if local >= torch.cuda.device_count():
        raise DistributedError(f"LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} GPU(s). "
                               "Start at most one process per GPU: torchrun --nproc_per_node="
                               f"{torch.cuda.device_count()} ...")
    return f"cuda:{local}"


def init_process_group(device: torch.device) -> bool:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA); True when this call created it.

    Raises:
        DistributedError: a torchrun variable is missing, or the group cannot be formed in time.
    """
    if is_initialized():
        return False  # the user (or an earlier fit) set it up: reuse it, leave it to its owner
    missing = [name for name in _TORCHRUN_VARS if name not in os.environ]
    if missing:
        raise DistributedError(f"strategy='ddp' found WORLD_SIZE but not {', '.join(missing)} in the "
                               "environment. Start the script with torchrun, e.g. "
                               "torchrun --nproc_per_node=2 train.py.")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = timeout_seconds()
    try:
        dist.init_process_group(backend, rank=_env_int("RANK"), world_size=_env_int("WORLD_SIZE"),
                                timeout=datetime.timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as err:
        raise DistributedError(
            f"Could not join the process group (backend {backend}, rank {os.environ['RANK']} of "
            f"{os.environ['WORLD_SIZE']}, master {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}): "
            f"{err}. Check that every machine runs the same torchrun command and can reach the master.") \
            from err
    atexit.register(_destroy)
    return True


def _destroy() -> None:
    if is_initialized():
        dist.destroy_process_group()


# No buffer broadcast in DDP's forward keeps it free of collectives, so validation (where ranks may
# hold different numbers of rows) cannot deadlock; buffers are synced once per epoch instead. The
# argument was renamed in recent torch (the new one still syncs at construction, which we want).
_NO_FORWARD_SYNC = ({"forward_sync_buffers": False}
                    if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters  # noqa: E501
                    else {"broadcast_buffers": False})


class _Forward(nn.Module):
    """What DDP wraps: the model's ``call``, so the loop can still ask for logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, final_activation: bool = True) -> torch.Tensor:
        return self.model.call(x, final_activation=final_activation)


class OneProcess:
    """``DDPRun``'s interface for a fit in one process: each method leaves things as they are.

    The loop talks to ``ctx.dist`` alone, so it has no distributed branches of its own.
    """

    parallel = False

    def __init__(self, model):
        self.forward = model.call

    def shard_length(self, n: int) -> int:
        return n

    def shard(self, order, n: int, device):
        return order

    def shard_validation(self, val):
        return val

    def shard_stream(self, stream) -> None:
        pass

    def reduce_accumulator(self, acc) -> None:
        pass

    def agree(self, flag: bool) -> bool:
        return flag

    def sync_buffers(self) -> None:
        pass

    def guarded_step(self, step):
        return step

    def for_this_rank(self, callbacks, verbose: int, diagnostics):
        return callbacks, verbose, diagnostics


class DDPRun:
    """One fit's distributed state: rank, world size, the DDP wrapper and the collectives.

    Args:
        model: a built ``Sequential`` already on this process's device.
        device: that device.

    Example (inside a torchrun worker):
        >>> run = DDPRun(model, torch.device("cpu"))
        >>> ctx.call = run.forward          # gradients now averaged across ranks
    """

    parallel = True

    def __init__(self, model, device: torch.device):
        self.device = device
        self.rank = rank()
        self.world_size = world_size()
        self.timeout = timeout_seconds()
        ids = [device.index] if device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel
        self.forward = self._guard("broadcast of the initial weights",
                                   lambda: ddp(_Forward(model), device_ids=ids, **_NO_FORWARD_SYNC))
        self.model = model
        # Every rank must draw the same permutation each epoch: use rank 0's seed.
        seed = torch.tensor([model.shuffle_seed], dtype=torch.int64, device=device)
        self._guard("broadcast of the shuffle seed", lambda: dist.broadcast(seed, 0))
        model.shuffle_seed = int(seed.item())

    def _guard(self, what: str, fn):
        try:
            return fn()
        except RuntimeError as err:  # DistBackendError and gloo's errors are RuntimeErrors
            raise self.lost_worker(what, err) from err

    def lost_worker(self, what: str, err: BaseException) -> DistributedError:
        """The error raised when a collective fails: names the rank, the timeout and what to check."""
        return DistributedError(_LOST_WORKER.format(what=what, rank=self.rank, world=self.world_size,
                                                    timeout=self.timeout, env=TIMEOUT_ENV, error=err))

    # -- data ----------------------------------------------------------------------------
    def shard_length(self, n: int) -> int:
        """Rows each rank trains on per epoch: ``ceil(n / world_size)``."""
        return -(-n // self.world_size)

    def shard(self, order: torch.Tensor | None, n: int, device) -> torch.Tensor:
        """This rank's rows of one epoch (``order`` None means 0..n-1), padded as DistributedSampler."""
        if order is None:
            order = torch.arange(n, device=device)
        return shard_rows(order, self.rank, self.world_size)

    def shard_validation(self, val):
        """This rank's validation rows, interleaved without padding so the reduced metrics are exact.

        Raises:
            DataError: fewer validation rows than processes.
        """
        if val is None:
            return None
        n = val[0].shape[0]
        if n < self.world_size:
            raise DataError(f"The validation data has {n} rows for {self.world_size} processes; each process "
                            "needs at least one. Use a larger validation_split or fewer processes.")
        return tuple(None if t is None else t[self.rank::self.world_size] for t in val)

    # -- reductions -------------------------------------------------------------------------
    def reduce_accumulator(self, acc) -> None:
        """Sum the epoch's loss sum, sample count and every metric state over all ranks, in place.

        One all_reduce of one float64 vector: float64 keeps counts exact past 2**24 samples.
        """
        parts = [acc.loss_sum.reshape(1), torch.tensor([float(acc.count)], device=acc.loss_sum.device)]
        states = []
        for _, metric in acc.metrics:
            # Every trainwell metric keeps additive running sums in `_state`, so summing is exact.
            for key in sorted(getattr(metric, "_state", {})):
                states.append((metric._state, key))
                parts.append(metric._state[key].reshape(-1))
        flat = torch.cat([p.to(torch.float64) for p in parts])
        self._guard("all_reduce of the epoch's loss and metrics", lambda: dist.all_reduce(flat))
        acc.loss_sum = flat[0].to(acc.loss_sum.dtype)
        acc.count = int(flat[1].item())
        start = 2
        for state, key in states:
            old = state[key]
            state[key] = flat[start:start + old.numel()].reshape(old.shape).to(old.dtype)
            start += old.numel()

    def shard_stream(self, stream) -> None:
        """A batched source (``data_adapters.BatchStream``): each process reads its own batches."""
        stream.shard(self.rank, self.world_size)

    def agree(self, flag: bool) -> bool:
        """True on every rank when it is True on any rank (e.g. ``stop_training``)."""
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        self._guard("agreeing on stop_training", lambda: dist.all_reduce(t, op=dist.ReduceOp.MAX))
        return bool(t.item())

    def sync_buffers(self) -> None:
        """Copy rank 0's buffers (BatchNormalization statistics) to every rank."""
        for buf in self.model.buffers():
            self._guard("broadcast of the layer buffers", lambda b=buf: dist.broadcast(b, 0))

    def guarded_step(self, step):
        """``step`` with a lost worker turned into a ``DistributedError`` (DDP all-reduces in backward)."""
        def run(*args):
            try:
                return step(*args)
            except RuntimeError as err:
                if isinstance(err, DistributedError) or not _is_collective_error(err):
                    raise
                raise self.lost_worker("all_reduce of the gradients", err) from err
        return run

    # -- callbacks ---------------------------------------------------------------------------
    def for_this_rank(self, callbacks, verbose: int, diagnostics):
        """Callbacks, verbosity and diagnostics for this rank: ranks other than 0 print and write nothing."""
        if self.rank == 0:
            return callbacks, verbose, diagnostics
        return [cb for cb in (callbacks or []) if not cb.writes_output], 0, "off"


def _is_collective_error(err: BaseException) -> bool:
    if isinstance(err, getattr(dist, "DistBackendError", ())):
        return True
    text = str(err).lower()
    return any(word in text for word in ("gloo", "nccl", "connection", "timed out", "timeout", "peer"))


def shard_rows(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rows ``rank, rank+W, ...`` of ``order`` after padding it to a multiple of ``W``, as DistributedSampler.

    Args:
        order: the epoch's row indices, the same on every rank, of shape (n,).
        rank: this process's rank in [0, world_size).
        world_size: the number of processes W.

    Returns:
        ``ceil(n / W)`` indices; padding repeats the first rows, so a few rows count twice.
    """
    n = order.shape[0]
    total = -(-n // world_size) * world_size
    if total > n:
        reps = -(-(total - n) // n)  # n may be smaller than the padding (tiny data, many ranks)
        order = torch.cat([order, order.repeat(reps)[: total - n]])
    return order[rank:total:world_size]


def start(model, device: torch.device, strategy) -> DDPRun | OneProcess:
    """Join the process group and wrap ``model`` for one fit; a ``OneProcess`` when not under torchrun.

    Raises:
        DistributedError: bad torchrun environment, or the group cannot be formed.
    """
    if check_strategy(strategy) is None or not launched_by_torchrun():
        return OneProcess(model)
    init_process_group(device)
    return DDPRun(model, device)

