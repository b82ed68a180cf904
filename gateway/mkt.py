"""Mean kinetic temperature (MKT), the cold-chain figure of thermal stress.

MKT is the single constant temperature that would cause the same total degradation
as the varying temperatures a product actually saw, when degradation follows the
Arrhenius equation. For n temperatures T_1..T_n in kelvin, taken at equal intervals:

    MKT = (ΔH / R) / -ln( (1/n) · Σ exp(-ΔH / (R · T_i)) )

with ΔH the activation energy and R the gas constant. The formula is J. D. Haynes,
"Worldwide virtual temperatures for product stability testing", J. Pharm. Sci.
60 (1971) 927-929, as adopted by USP General Chapter <1160> "Pharmaceutical
Calculations in Pharmacy Practice" (and <659> "Packaging and Storage
Requirements"); ICH Q1A(R2) defines the term. USP's default activation energy is
83.144 kJ/mol, chosen so that ΔH/R is exactly 10 000 K with R = 8.3144 J/(mol·K).

:func:`mean_kinetic_temperature` takes samples in °C and optional weights (for
samples that stand for unequal lengths of time); with equal weights it is the
formula above. The sum is evaluated as a log-sum-exp, so that large ΔH/T ratios
cannot underflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DEFAULT_ACTIVATION_ENERGY_J_PER_MOL = 83_144.0
GAS_CONSTANT_J_PER_MOL_K = 8.3144  # as USP <1160> uses it: ΔH/R = 10 000 K by default
ZERO_CELSIUS_K = 273.15


def mean_kinetic_temperature(
    celsius: Sequence[float],
    activation_energy_j_per_mol: float = DEFAULT_ACTIVATION_ENERGY_J_PER_MOL,
    weights: Sequence[float] | None = None,
) -> float:
    """The MKT of ``celsius`` in °C; ``weights`` (>= 0, not all 0) default to equal."""
    if not celsius:
        raise ValueError("mean kinetic temperature needs at least one temperature")
    if activation_energy_j_per_mol <= 0 or not math.isfinite(activation_energy_j_per_mol):
        raise ValueError(f"activation energy must be positive, got {activation_energy_j_per_mol}")
    if weights is None:
        weights = [1.0] * len(celsius)
    if len(weights) != len(celsius):
        raise ValueError(f"{len(weights)} weights for {len(celsius)} temperatures")
    if any(w < 0 or not math.isfinite(w) for w in weights) or not any(weights):
        raise ValueError("weights must be finite, >= 0 and not all 0")
    ratio = activation_energy_j_per_mol / GAS_CONSTANT_J_PER_MOL_K  # ΔH/R in kelvin
    exponents = []
    for value in celsius:
        kelvin = value + ZERO_CELSIUS_K
        if kelvin <= 0 or not math.isfinite(kelvin):
            raise ValueError(f"{value} °C is not a temperature above absolute zero")
        exponents.append(-ratio / kelvin)
    # ln( Σ w_i exp(x_i) / Σ w_i ), shifted by the largest x so that nothing underflows.
    top = max(exponents)
    total = math.fsum(w * math.exp(x - top) for w, x in zip(weights, exponents, strict=True))
    log_mean = top + math.log(total / math.fsum(weights))
    return ratio / -log_mean - ZERO_CELSIUS_K
