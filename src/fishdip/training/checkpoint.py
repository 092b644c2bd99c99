"""A running episode's training state, saved every few minutes so that a stopped run continues.

A paper-protocol cell trains for hours, longer than a working session; whatever runs when a
session ends is ended with it. The trainer saves what it needs to continue exactly where it was
(``Trainer.state`` / ``Trainer.restore``): the trainable entries (every trainable parameter for
dense methods; the entries any mask touched for sparse ones, whose other entries are the base
model's), the optimizer and schedule state, the mask and touched entries, the step, the data order
(the shuffling generator at the start of the epoch and the position in it), the RNG state that
drives dropout, and the record so far (losses, refreshes, curve). Continuing from it gives the same
losses, masks and weights as a run that was never stopped (tests/test_checkpoint.py).

A stop asked for by a signal loses nothing: while an episode trains with a checkpoint, the first
SIGINT (Ctrl-C) or SIGTERM lets the current optimizer step finish, saves the state and then stops
the run as an interrupt does (``stop_on_signal``); a second SIGINT interrupts at once.

The file is written atomically (a temporary file, then a rename): a kill while saving leaves the
previous checkpoint. It lies in ``<output_dir>/checkpoint/episode-<i>.pt``, or, where
``$FISHDIP_CHECKPOINT_DIR`` is set, in a folder there named after the run folder's absolute path
(a place that outlives the run folder, e.g. a work tree that is laid anew). It records the run's
config; one that does not match the run about to start (``same_run``, the runner's comparison of
run configs) is ignored. The runner removes it once the episode's results are written, with the
evaluation's journal beside it (evaluation/journal.py).
"""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fishdip.io import remove_file

CHECKPOINT_DIR_ENV = "FISHDIP_CHECKPOINT_DIR"


def checkpoint_path(output_dir: str | Path, episode: int) -> Path:
    """Where the training state of ``episode`` of the run in ``output_dir`` is kept."""
    root = os.environ.get(CHECKPOINT_DIR_ENV)
    if root:
        key = hashlib.sha256(str(Path(output_dir).absolute()).encode()).hexdigest()[:16]
        return Path(root).expanduser() / key / f"episode-{episode}.pt"
    return Path(output_dir) / "checkpoint" / f"episode-{episode}.pt"


def saved_progress(path: Path) -> tuple[int, float] | None:
    """The step a saved training state reached and the seconds of training it records, or None when
    there is none or it cannot be read: for a dry run to show what a continued cell starts from
    (whether it matches the run is judged when the run starts: ``Checkpoint.load``)."""
    if not path.is_file():
        return None
    try:  # mmap: only the few entries read here come off the disk, not the weights
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(state["where"]["step"]), float(state["result"]["seconds"])
    except Exception:  # a truncated or foreign file: the run itself says so when it starts
        return None


@dataclass
class Checkpoint:
    """Saves a trainer's state to ``path`` at most every ``every_seconds`` (0: every step);
    ``identity`` is what a saved state must match to be continued from, as ``same_run(saved, identity)``
    judges (the runner compares run configs as run folders are: options added since count with the
    value older runs had, runs/rundir.py)."""

    path: Path
    every_seconds: float = 600.0
    identity: dict = field(default_factory=dict)
    same_run: Callable[[dict, dict], bool] = lambda saved, identity: saved == identity
    last_saved: float = field(default_factory=time.perf_counter)
    stop_signal: int | None = None  # set by stop_on_signal: save at the end of this step, then stop

    def due(self) -> bool:
        return time.perf_counter() - self.last_saved >= self.every_seconds or self.stop_signal is not None

    @contextmanager
    def stop_on_signal(self) -> Iterator[None]:
        """While the block runs (a training loop that saves when ``due``), the first SIGINT or SIGTERM
        only sets ``stop_signal``; a second SIGINT raises KeyboardInterrupt at once. The previous
        handlers come back afterwards. Only the main thread can install handlers: elsewhere, nothing
        changes."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def ask(signum, _frame) -> None:
            if self.stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_signal = signum

        previous = {s: signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def save(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save({"identity": self.identity, **state}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.last_saved = time.perf_counter()

    def load(self, log=print) -> dict | None:
        """The saved state, or None when there is none or it belongs to another run (said in the log)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: start over rather than fail the run
            log(f"warning: {self.path}: unreadable training checkpoint ({exc}); training from the start")
            return None
        if state.get("identity") is None or not self.same_run(state["identity"], self.identity):
            log(f"warning: {self.path}: a training checkpoint of another run; training from the start")
            return None
        return state

    def remove(self) -> None:
        remove_file(self.path)
