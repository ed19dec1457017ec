"""Attenuation added by disease: COVID-19 ground glass and consolidation, the viral perihilar
interstitial pattern, and pleural effusions."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from core.demo.xray_phantom.anatomy import Anatomy, Frame
from core.demo.xray_phantom.fields import F32, ramp, side_map, smooth_noise, smoothstep, uniform, unit_clip
from core.demo.xray_phantom.vessels import Vessels

#: Severity above which airspace consolidation is drawn, per diseased label.
CONSOLIDATION_SEVERITY: MappingProxyType[str, float] = MappingProxyType({"COVID-19": 0.5, "Viral pneumonia": 0.75})

#: Severity from which a pleural effusion may be drawn, and its probability there.
EFFUSION_MIN_SEVERITY: float = 0.6
EFFUSION_PROBABILITY: float = 0.2


@dataclass
class Disease:
    """Attenuation added by disease and what was drawn."""

    attenuation: np.ndarray | None
    consolidation: bool
    effusion: bool


def draw_disease(
    rng: np.random.Generator,
    frame: Frame,
    anat: Anatomy,
    vessels: Vessels,
    label: str,
    severity: float,
    size: int,
) -> Disease:
    """The disease of ``label`` at ``severity`` on the (size, size) frame; ``rng`` is the disease stream."""
    # Effusion draws come first and always, so they do not depend on the rest of the stream.
    effusion_draw = float(rng.random())
    effusion_side = int(rng.integers(0, 3))
    effusion_amount = uniform(rng, 0.3, 1.0)
    if label == "Normal" or severity <= 0.0:
        return Disease(attenuation=None, consolidation=False, effusion=False)
    if label == "COVID-19":
        att, consolidation = _covid_opacity(rng, frame, severity, size)
    else:
        att, consolidation = _viral_opacity(rng, frame, anat, vessels, severity, size)
    effusion = severity >= EFFUSION_MIN_SEVERITY and effusion_draw < EFFUSION_PROBABILITY
    if effusion:
        att += _effusion(frame, anat, effusion_side, effusion_amount)
    return Disease(attenuation=att, consolidation=consolidation, effusion=effusion)


def _covid_opacity(rng: np.random.Generator, frame: Frame, severity: float, size: int) -> tuple[np.ndarray, bool]:
    """Bilateral, peripheral, lower-zone ground glass, with consolidation at higher severity."""
    asym = (uniform(rng, 0.7, 1.0), uniform(rng, 0.7, 1.0))
    patches = smooth_noise(rng, 24, 1.3, size)
    mottle = smooth_noise(rng, 72, 1.0, size)
    # Zones widen from the lateral lower lung toward the hila and apices as severity rises.
    periph = smoothstep(unit_clip(frame.lateral_frac - F32(0.45 - 0.35 * severity), 1 / 0.5))
    lower = smoothstep(unit_clip(frame.vertical_frac - F32(0.35 - 0.35 * severity), 1 / 0.6))
    zone = periph * lower * side_map(frame.right, asym)
    # Multifocal patches where the random field, raised within the zone, crosses a threshold
    # that falls with severity; they grow and merge as severity rises.
    # Centre the field on the lateral lower lung so that mild disease is never drawn away.
    reference = frame.lateral_frac * frame.vertical_frac * frame.lung
    patches -= F32(float(np.vdot(patches, reference)) / max(float(reference.sum()), 1e-6))
    level = F32(0.8) * patches + F32(3.0) * zone
    ground_glass = smoothstep(unit_clip(level - F32(2.2 - 1.2 * severity), 1.0))
    # A faint haze over the whole zone keeps even the mildest case visible.
    ground_glass = np.maximum(ground_glass, F32(0.5) * zone, out=ground_glass)
    ground_glass *= frame.lung
    # The fine mottling keeps vessels visible through the haze.
    mottled = np.clip(F32(0.85) + F32(0.15) * mottle, 0.0, None)
    opacity = F32(0.14 + 0.16 * severity) * ground_glass * mottled
    consolidation = severity > CONSOLIDATION_SEVERITY["COVID-19"]
    if consolidation:
        excess = min((severity - CONSOLIDATION_SEVERITY["COVID-19"]) / 0.3, 1.0)
        core = smoothstep(unit_clip(level - F32(3.5 - 1.4 * severity), 1.0))
        opacity += F32(0.2 + 0.2 * excess) * core * mottled * frame.lung
    return opacity, consolidation


def _viral_opacity(
    rng: np.random.Generator,
    frame: Frame,
    anat: Anatomy,
    vessels: Vessels,
    severity: float,
    size: int,
) -> tuple[np.ndarray, bool]:
    """Bilateral perihilar interstitial pattern: peribronchial cuffing and reticulation."""
    asym = (uniform(rng, 0.75, 1.0), uniform(rng, 0.75, 1.0))
    net = smooth_noise(rng, 96, 1.0, size)
    patches = smooth_noise(rng, 16, 1.2, size)
    hl = side_map(frame.right, anat.hilum_l)
    hy = side_map(frame.right, anat.hilum_y)
    dx = frame.ell - hl
    dy = (frame.Y - hy) * F32(0.8)  # the pattern spreads a little further up and down
    radius = 0.4 + 0.25 * severity
    central = unit_clip(F32(1.0) - (dx * dx + dy * dy) * F32(1.0 / radius**2), 1.0)
    central *= central
    zone = central * frame.lung * side_map(frame.right, asym)
    # Reticulation: the zero set of a band-limited field draws a net of thin lines.
    reticular = unit_clip(F32(0.45) - np.abs(net), 1 / 0.45)
    cuffing = vessels.blurred(size, 0.017)
    cuffing *= F32(2.5)
    haze = unit_clip(F32(0.5) + F32(0.35) * patches, 1.0)
    texture = F32(0.35) * reticular + F32(1.2) * np.minimum(cuffing, F32(1.0)) + F32(0.25) * haze
    opacity = F32(0.1 + 0.14 * severity) * zone * texture
    consolidation = severity > CONSOLIDATION_SEVERITY["Viral pneumonia"]
    if consolidation:
        patchy = unit_clip(patches + F32(1.5) * central - F32(2.0), 1 / 0.5)
        opacity += F32(0.2) * smoothstep(patchy) * frame.lung
    return opacity, consolidation


def _effusion(frame: Frame, anat: Anatomy, side: int, amount: float) -> np.ndarray:
    """Fluid in the costophrenic recess(es): a meniscus rising along the lateral chest wall.

    ``side`` is 0 (right), 1 (left) or 2 (both); ``amount`` in [0, 1] sets the fluid height.
    """
    halfwidth = frame.lung_halfwidth
    dome_y = side_map(frame.right, anat.dome_y)
    dome_c = side_map(frame.right, anat.dome_c)
    lateral_dome = dome_y + dome_c * (halfwidth - F32(0.4)) ** 2
    top = lateral_dome - F32(0.12 + 0.16 * amount)
    # The meniscus climbs steeply along the chest wall and flattens medially.
    reach = np.sqrt(unit_clip(halfwidth - frame.ell, 1.0 / 0.45))
    surface = top + F32(0.2) * reach
    fluid = ramp(frame.Y - surface, 6.0 * frame.edge)
    fluid *= ramp(halfwidth + F32(0.03) - frame.ell, 3.0 * frame.edge)
    # Fluid lies on the hemidiaphragm; below it the abdomen is as dense already.
    fluid *= ramp(frame.dome + F32(0.01) - frame.Y, 3.0 * frame.edge)
    if side == 0:
        fluid *= frame.right
    elif side == 1:
        fluid *= ~frame.right
    return F32(0.6) * fluid
