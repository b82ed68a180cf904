"""Temperature excursions: when a series of readings left its threshold band, and how far.

A :class:`Band` is the allowed range (a lower limit, an upper limit, or both). A
series is one sensor's readings in sensor-time order. Time is attributed to readings
as a data logger does (sample and hold): a reading's temperature stands from its own
time until the next reading's. So an excursion starts at its first reading outside
the band and ends at the first reading back inside; a series that ends outside the
band ends its last excursion at its last reading (``ongoing``). The time out of range
is the sum of the excursions' durations; with several sensors on one asset it is the
length of the union of their excursions (:func:`union_ms`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Side = Literal["above", "below", "both"]


@dataclass(frozen=True, slots=True)
class Band:
    """The allowed temperatures, inclusive; ``None`` leaves a side open."""

    min_c: float | None
    max_c: float | None

    def __post_init__(self) -> None:
        if self.min_c is None and self.max_c is None:
            raise ValueError("a threshold band needs a minimum, a maximum or both")
        for name, value in (("minimum", self.min_c), ("maximum", self.max_c)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"the band's {name} must be a finite number, got {value}")
        if self.min_c is not None and self.max_c is not None and self.min_c >= self.max_c:
            raise ValueError(
                f"the band's minimum {self.min_c} is not below its maximum {self.max_c}"
            )

    def deviation(self, celsius: float) -> float:
        """How far ``celsius`` lies outside the band (0 inside), in kelvin."""
        if self.max_c is not None and celsius > self.max_c:
            return celsius - self.max_c
        if self.min_c is not None and celsius < self.min_c:
            return self.min_c - celsius
        return 0.0

    def describe(self) -> str:
        if self.min_c is None:
            return f"at most {self.max_c:g} °C"
        if self.max_c is None:
            return f"at least {self.min_c:g} °C"
        return f"{self.min_c:g} to {self.max_c:g} °C"


@dataclass(frozen=True, slots=True)
class Sample:
    """One temperature reading: sensor time (ms since the epoch) and °C."""

    t_ms: int
    celsius: float


@dataclass(frozen=True, slots=True)
class Excursion:
    """A maximal run of consecutive readings outside the band."""

    start_ms: int  # the first reading outside the band
    end_ms: int  # the first reading back inside, or the last reading if none
    readings: int
    peak_c: float  # the temperature furthest outside the band
    peak_deviation_c: float  # how far beyond the band that is
    side: Side
    ongoing: bool  # the series ended outside the band
    device_id: str = ""

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


def find_excursions(samples: Sequence[Sample], band: Band, device_id: str = "") -> list[Excursion]:
    """The excursions of one sensor's series, in time order (``samples`` sorted by time)."""
    found: list[Excursion] = []
    run: list[Sample] = []

    def close(end_ms: int, ongoing: bool) -> None:
        peak = max(run, key=lambda s: band.deviation(s.celsius))
        high = any(band.max_c is not None and s.celsius > band.max_c for s in run)
        low = any(band.min_c is not None and s.celsius < band.min_c for s in run)
        side: Side = "both" if high and low else "above" if high else "below"
        found.append(
            Excursion(
                start_ms=run[0].t_ms,
                end_ms=end_ms,
                readings=len(run),
                peak_c=peak.celsius,
                peak_deviation_c=band.deviation(peak.celsius),
                side=side,
                ongoing=ongoing,
                device_id=device_id,
            )
        )

    for sample in samples:
        if band.deviation(sample.celsius) > 0:
            run.append(sample)
        elif run:
            close(sample.t_ms, ongoing=False)
            run = []
    if run:
        close(run[-1].t_ms, ongoing=True)
    return found


def worst_excursion(excursions: Iterable[Excursion]) -> Excursion | None:
    """The excursion furthest outside the band; the longer one when two go equally far."""
    return max(excursions, key=lambda e: (e.peak_deviation_c, e.duration_ms), default=None)


def union_ms(intervals: Iterable[tuple[int, int]]) -> int:
    """The total length of the union of [start, end) intervals."""
    total = 0
    current_start: int | None = None
    current_end = 0
    for start, end in sorted(intervals):
        if current_start is None or start > current_end:
            if current_start is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_start is not None:
        total += current_end - current_start
    return total
