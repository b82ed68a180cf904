"""The progress display of a long run: elapsed time, messages sent, rate, faults, lag.

A rich progress bar on a terminal; nothing at all when output goes to a file or a
pipe (rich's ``Progress(disable=...)`` with the console's own terminal check), so
scripts and CI logs only get the final summary line.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


class ProgressDisplay:
    """Shows how far a run is; quiet unless ``console`` is a terminal."""

    def __init__(self, console: Console, duration_s: float, *, enabled: bool | None = None) -> None:
        self.enabled = console.is_terminal if enabled is None else enabled
        self._progress = Progress(
            TextColumn("[bold]simulate"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[sent]:>10,} sent"),
            TextColumn("{task.fields[rate]:>8,.0f} msg/s"),
            TextColumn("{task.fields[faults]:>6,} faults"),
            TextColumn("lag {task.fields[lag_ms]:>6,.0f} ms"),
            console=console,
            disable=not self.enabled,
            refresh_per_second=4,
        )
        self._task = self._progress.add_task(
            "simulate", total=duration_s, sent=0, rate=0.0, faults=0, lag_ms=0.0
        )
        self._last = (0.0, 0)

    def update(self, elapsed_s: float, sent: int, faults: int, lag_ms: float) -> None:
        if not self.enabled:
            return
        last_t, last_sent = self._last
        rate = self._progress.tasks[0].fields["rate"]
        if elapsed_s - last_t >= 0.5:
            rate = (sent - last_sent) / (elapsed_s - last_t)
            self._last = (elapsed_s, sent)
        self._progress.update(
            self._task, completed=elapsed_s, sent=sent, rate=rate, faults=faults, lag_ms=lag_ms
        )

    def __enter__(self) -> ProgressDisplay:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()
