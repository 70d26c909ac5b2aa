"""What every training job shares: its place under torchrun, and its logs (CSV + TensorBoard)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .io import atomic_path

__all__ = ["RunLogs", "check_run_folder", "dist_env"]


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank): from torchrun's variables, else a single process."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return (
            int(os.environ["RANK"]),
            int(os.environ["WORLD_SIZE"]),
            int(os.environ.get("LOCAL_RANK", 0)),
        )
    return 0, 1, 0


def check_run_folder(out: Path, files: tuple[str, ...], resume: bool) -> None:
    """Refuse, before any work, a run folder that is a file, or one that holds what a run
    writes (``files``, the first its checkpoint, and the logs) when the run does not
    ``resume``: a new run never replaces the files of another one, nor the user's files of
    those names.

    Raises:
        SaicmError: naming the folder and the first such file.
    """
    from ..errors import SaicmError

    if out.exists() and not out.is_dir():
        raise SaicmError(f"{out}: not a folder (a run writes a folder of files)")
    if resume or not out.is_dir():
        return
    if os.path.lexists(out / files[0]):
        raise SaicmError(f"{out} already holds a run: pass --resume to continue it")
    held = [n for n in (*files, *RunLogs.FILES) if os.path.lexists(out / n)]
    if held:
        raise SaicmError(
            f"{out} already holds {held[0]}, and a new run replaces no existing file: choose "
            "another run folder (a run that stopped before its first checkpoint leaves its "
            "config.yaml: --resume starts it again from its settings)"
        )


class RunLogs:
    """CSV (train.csv, val.csv) and TensorBoard, written by rank 0 only."""

    #: the files and folders of a run folder that these logs write
    FILES = ("train.csv", "val.csv", "tensorboard")

    def __init__(self, out: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.out = out
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:  # TensorBoard is optional; the CSV logs are not
                self.tb = None

    def row(self, name: str, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        path = self.out / f"{name}.csv"
        fresh = not path.exists()
        try:
            with path.open("a", newline="") as f:
                w = csv.writer(f)
                if fresh:
                    w.writerow(["step", *values])
                w.writerow([step, *(f"{v:.6g}" for v in values.values())])
        except OSError as exc:  # a full disk: name the log, not a bare errno
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        if self.tb is not None:
            try:
                for k, v in values.items():
                    self.tb.add_scalar(f"{name}/{k}", v, step)
                self.tb.flush()
            except Exception as exc:  # a full disk: the CSV logs say the same; go on without
                import warnings

                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                warnings.warn(
                    f"TensorBoard logs stopped ({first}); the CSV logs go on", stacklevel=2
                )
                self.tb = None

    def truncate(self, step: int) -> None:
        """Drop rows past ``step`` (written after the checkpoint a resumed run starts from)."""
        if not self.enabled:
            return
        for name in ("train", "val"):
            path = self.out / f"{name}.csv"
            if path.exists():
                lines = path.read_text().splitlines()
                if not lines:
                    continue
                width = len(lines[0].split(","))
                keep = [lines[0]] + [  # a row cut by a kill or a full disk is dropped too
                    ln
                    for ln in lines[1:]
                    if len(ln.split(",")) == width
                    and ln.split(",")[0].isdigit()
                    and int(ln.split(",")[0]) <= step
                ]
                with atomic_path(path) as tmp:
                    tmp.write_text("\n".join(keep) + "\n")
