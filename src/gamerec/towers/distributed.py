"""Training across processes with PyTorch's own engine (``torchrun``, DDP).

Plain arguments in, no environment reading: :mod:`gamerec.settings` turns torchrun's ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` into settings, and the
pipeline passes them here. :func:`start_workers` joins the process group (gloo on CPU, NCCL on
GPU) and fails with a :class:`~gamerec.errors.TrainingError` naming what to check when the
other workers do not turn up in time. The collectives the training loop needs are small
helpers here; every failure of a collective (a worker died, the network broke) becomes a
``TrainingError`` too, so the command exits with a clear message instead of a traceback, and
so does torchrun's SIGTERM to the survivors (:func:`stop_on_sigterm`), said on stderr at once.
"""

from __future__ import annotations

import datetime
import gc
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from gamerec.errors import TrainingError

__all__ = [
    "Workers",
    "all_reduce_sum",
    "broadcast_from_rank0",
    "collective_errors",
    "gather_candidates",
    "rank_slice",
    "start_workers",
    "stop_on_sigterm",
    "stop_workers",
]

RESUME_HINT = (
    "The last good model/ is untouched; run the same command again to resume from the last "
    "finished epoch"
)


@dataclass(frozen=True)
class Workers:
    """This process's place among the training workers, once the process group is up."""

    rank: int
    world_size: int
    device: torch.device
    backend: str
    #: a second group for the item-embedding gathers, so that they can never interleave with
    #: DDP's own gradient all-reduces on the default group
    gather_group: Any = None

    @property
    def is_writer(self) -> bool:
        return self.rank == 0


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise TrainingError(
            "distributed.backend nccl needs CUDA GPUs; use gloo (or auto) to train on CPUs"
        )
    return backend


def start_workers(
    *,
    rank: int,
    world_size: int,
    local_rank: int,
    master_addr: str,
    master_port: int,
    backend: str,
    device: torch.device,
    timeout_s: float,
) -> Workers:
    """Join the ``world_size`` training workers as ``rank``; rank 0 hosts the rendezvous.

    ``device`` is the resolved torch device; on CUDA each worker takes GPU ``local_rank``.
    Waits at most ``timeout_s`` for the others (the same limit then applies to every
    collective step).
    """
    if not 0 <= rank < world_size:
        raise TrainingError(f"worker rank {rank} is outside 0..{world_size - 1}")
    if dist.is_initialized():
        raise TrainingError("a process group is already running in this process")
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise TrainingError(
                f"worker {rank} wants GPU {local_rank} but only {torch.cuda.device_count()} "
                "are visible; start at most one worker per GPU on each machine"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    chosen = resolve_backend(backend, device)
    endpoint = f"{master_addr}:{master_port}"
    timeout = datetime.timedelta(seconds=timeout_s)
    try:
        dist.init_process_group(
            chosen,
            init_method=f"tcp://{endpoint}",
            rank=rank,
            world_size=world_size,
            timeout=timeout,
        )
        gather_group = dist.new_group(backend=chosen, timeout=timeout)
        # a first collective proves every worker is reachable before any data is read
        probe = torch.ones(1, device=device)
        dist.all_reduce(probe)
    except (dist.DistError, RuntimeError, ValueError) as exc:
        if dist.is_initialized():
            dist.destroy_process_group()
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(
            f"training worker {rank} of {world_size} could not meet the others at {endpoint} "
            f"within {timeout_s:g} s ({first_line}). Start every worker the same way "
            "(`torchrun --nproc-per-node N -m gamerec train`; across machines also --nnodes, "
            "--rdzv-backend c10d --rdzv-endpoint HOST:PORT), check that MASTER_ADDR:MASTER_PORT "
            "is reachable from every machine, or raise distributed.timeout_s"
        ) from None
    return Workers(rank, world_size, device, chosen, gather_group)


def stop_workers() -> None:
    """Leave the process group (a no-op when none is running)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def stop_on_sigterm(workers: Workers) -> Iterator[None]:
    """SIGTERM (torchrun stopping the workers after one failed, or a cancelled run) becomes a
    TrainingError, announced on stderr at once; outside the main thread nothing is installed.
    A lost peer's TrainingError leaving the block is written on stderr here too, and marked
    reported, called from the library as from the CLI: torchrun's SIGTERM follows it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop_error(signum: int) -> TrainingError:
        return TrainingError(
            f"training worker {workers.rank} was told to stop (signal {signum}): another worker "
            f"failed or the run was cancelled. {RESUME_HINT}"
        )

    announcement = _StopAnnouncement(stop_error)

    def stop(signum: int, frame: Any) -> None:
        announcement.announce(signum)
        error = _group_lost(stop_error(signum))
        error.already_reported = True
        raise error

    previous = signal.signal(signal.SIGTERM, stop)
    announcement.start()
    try:
        yield
    except TrainingError as error:
        # A lost peer is noticed as torchrun's SIGTERM is on its way: said here, the message
        # is out before the default handler is back and the signal ends the process.
        if error.exit_at_once and not error.already_reported:
            announcement.say(error)
            error.already_reported = True
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        announcement.close()


class _StopAnnouncement:
    """Says at once on stderr that a training worker was told to stop (SIGTERM from torchrun).

    The Python-level handler runs only when the main thread next runs Python code; a worker
    blocked in a collective on a dead peer may not get there before torchrun's 30 s grace
    ends in SIGKILL, and the user would never learn why. The C-level handler writes the signal
    number to a wake-up socket at once; a thread waiting on it writes the message if the
    Python handler has not done so within a second. Exactly one of the two writes it.
    """

    def __init__(self, error_for: Callable[[int], Exception]) -> None:
        self._error_for = error_for
        self._claim = threading.Lock()
        self._handled = threading.Event()
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._thread = threading.Thread(target=self._wait, name="gamerec-stop", daemon=True)
        self._previous_fd: int | None = None

    def start(self) -> None:
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._thread.start()

    def announce(self, signum: int) -> None:
        """Write the message unless the other side has; safe in a signal handler."""
        self._handled.set()
        self.say(self._error_for(signum))

    def say(self, error: Exception) -> None:
        """Write ``error`` as the CLI would, unless a message was written already."""
        if self._claim.acquire(blocking=False):
            os.write(2, f"Error: {error}\n".encode())

    def _wait(self) -> None:
        while True:
            try:
                received = self._reader.recv(1)
            except OSError:
                return
            if not received:
                return
            if received[0] == signal.SIGTERM:
                if not self._handled.wait(1.0):
                    self.announce(signal.SIGTERM)
                return
            if received[0] == 0:  # close()
                return

    def close(self) -> None:
        signal.set_wakeup_fd(-1 if self._previous_fd is None else self._previous_fd)
        with suppress(OSError):  # not a signal number: the waiting thread ends
            self._writer.send(b"\0")
        self._thread.join(2.0)
        self._writer.close()
        self._reader.close()


@contextmanager
def collective_errors(workers: Workers | None) -> Iterator[None]:
    """Turn a failed collective (a worker died, the network broke) into a TrainingError."""
    if workers is None:
        yield
        return
    try:
        yield
    except RuntimeError as exc:  # DistError, or a RuntimeError from DDP's gradient hooks
        if not isinstance(exc, dist.DistError) and not _lost_peer(str(exc)):
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _group_lost(
            TrainingError(
                f"training worker {workers.rank} of {workers.world_size} lost the other workers "
                f"({detail}); one of them stopped or the network failed. {RESUME_HINT}"
            )
        ) from None


def _group_lost(error: TrainingError) -> TrainingError:
    """``error``, for a worker whose process group is broken.

    Finalizers of the group's objects (pending work, the DDP reducer) can block on the lost
    peer while holding the GIL; a garbage collection on the way out would then hang this
    worker, silent, until torchrun kills it. So collection stops here (the process is about to
    exit) and the CLI exits without the interpreter's teardown once the message is out.
    """
    gc.disable()
    error.exit_at_once = True
    return error


#: what gloo, NCCL and the c10d store say when a peer is gone (DDP's backward hooks raise a
#: plain RuntimeError with these, not a DistError)
_PEER_FAILURES = (
    "gloo",
    "nccl",
    "connection reset",
    "connection closed",
    "connection refused",
    "broken pipe",
    "timed out",
    "processgroup",
    "c10d",
)


def _lost_peer(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _PEER_FAILURES)


def rank_slice(n: int, workers: Workers) -> tuple[int, int]:
    """This worker's contiguous share ``[start, end)`` of ``n`` rows (sizes differ by <= 1)."""
    return n * workers.rank // workers.world_size, n * (workers.rank + 1) // workers.world_size


def all_reduce_sum(values: Sequence[float], workers: Workers) -> list[float]:
    """Element-wise sums over all workers, in float64; every worker gets the same numbers."""
    tensor = torch.tensor(list(values), dtype=torch.float64, device=workers.device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.cpu()]


def broadcast_from_rank0(values: Sequence[float], workers: Workers) -> list[float]:
    """Rank 0's ``values`` on every worker (float64)."""
    tensor = torch.tensor(list(values), dtype=torch.float64, device=workers.device)
    dist.broadcast(tensor, src=0)
    return [float(v) for v in tensor.cpu()]


class _GatherWithGrad(torch.autograd.Function):
    """All-gather of equal-shaped blocks whose backward sends each worker the summed gradient
    of its own block (every worker's loss used every block)."""

    @staticmethod
    def forward(ctx: Any, block: torch.Tensor, workers: Workers) -> torch.Tensor:
        ctx.workers = workers
        parts = [torch.empty_like(block) for _ in range(workers.world_size)]
        dist.all_gather(parts, block.contiguous(), group=workers.gather_group)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        workers: Workers = ctx.workers
        total = grad.contiguous().clone()
        dist.all_reduce(total, group=workers.gather_group)
        width = total.shape[0] // workers.world_size
        return total[workers.rank * width : (workers.rank + 1) * width], None


def gather_candidates(
    ids: torch.Tensor, embeddings: torch.Tensor, workers: Workers
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every worker's candidate items and their embeddings, deduplicated and sorted by id.

    ``ids`` (n,) are distinct item ids this worker embedded, ``embeddings`` (n, D) their item
    tower outputs. Returns the sorted union of all workers' ids and one embedding per id (the
    first worker's copy). Gradients flow back to the worker that computed each embedding, so
    a worker's users train the item tower through the other workers' items too.
    """
    group = workers.gather_group
    count = torch.tensor([len(ids)], dtype=torch.long, device=ids.device)
    counts = [torch.zeros_like(count) for _ in range(workers.world_size)]
    dist.all_gather(counts, count, group=group)
    sizes = [int(c.item()) for c in counts]
    width = max(sizes)
    padded_ids = torch.full((width,), -1, dtype=torch.long, device=ids.device)
    padded_ids[: len(ids)] = ids
    padded = embeddings.new_zeros((width, embeddings.shape[1]))
    padded = torch.cat([embeddings, padded[len(ids) :]]) if len(ids) < width else embeddings
    all_ids = [torch.empty_like(padded_ids) for _ in range(workers.world_size)]
    dist.all_gather(all_ids, padded_ids, group=group)
    gathered = _GatherWithGrad.apply(padded, workers)  # (world_size * width, D)
    flat_ids = torch.cat([part[:size] for part, size in zip(all_ids, sizes, strict=True)])
    flat = torch.cat(
        [gathered[rank * width : rank * width + size] for rank, size in enumerate(sizes)]
    )
    union, inverse = torch.unique(flat_ids, return_inverse=True)
    positions = torch.arange(len(flat_ids), device=flat_ids.device)
    first = torch.full((len(union),), len(flat_ids), dtype=torch.long, device=flat_ids.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    return union, flat[first]
