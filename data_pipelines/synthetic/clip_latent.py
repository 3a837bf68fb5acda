"""A per-clip speaking mode (emotion / style) that changes the mouth a lot and the audio little.

Why: MemFace's implicit memory is meant to supply what the audio lacks. In the base synthetic set
the mouth is (speaker style x phonemes) plus small per-phoneme noise, so a model that knows the
speaker leaves little for a memory to add. Here every clip also draws a latent mode, e.g. 'happy'
(wide spread lips, smile), 'sad' (small, closed jaw) or 'emphatic' (large jaw, strong rounding),
with an intensity in [0.3, 1]. The mode bends the speaker's articulation strongly, while the audio
reflects it only through prosody offsets (pitch, rate, volume of espeak) scaled by `prosody`, small
next to the voices' own spread (pitch 25..76, rate 140..200 across voices): the same phonemes
under two latents give clearly different mouths and nearly the same sound, so audio alone
underdetermines the mouth. The ground truth is stored per clip (coeffs.npz `clip_latent`,
meta.json `latent`) for analysis: it is never an input of the models.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from data_pipelines.synthetic import visemes


@dataclasses.dataclass(frozen=True)
class Mode:
  """How a speaking mode bends articulation (gains, added smile) and prosody (full intensity)."""
  jaw: float
  rounding: float
  spreading: float
  smile: float
  pitch: float  # espeak pitch units (0..100 scale).
  rate: float  # Relative change of words per minute.
  volume: float  # espeak volume units (100 normal).


MODES = {
    "neutral": Mode(jaw=1.0, rounding=1.0, spreading=1.0, smile=0.0, pitch=0, rate=0.0, volume=0),
    "happy": Mode(jaw=1.15, rounding=0.5, spreading=1.8, smile=0.6, pitch=12, rate=0.08, volume=10),
    "sad": Mode(jaw=0.45, rounding=0.9, spreading=0.5, smile=0.0, pitch=-12, rate=-0.12,
                volume=-20),
    "emphatic": Mode(jaw=1.8, rounding=1.6, spreading=0.9, smile=0.0, pitch=6, rate=-0.05,
                     volume=25),
}
MODE_NAMES = tuple(MODES)


@dataclasses.dataclass(frozen=True)
class ClipLatent:
  """One clip's drawn mode and intensity (0: neutral articulation, 1: the full mode)."""
  mode: str
  intensity: float

  @property
  def index(self) -> int:
    return MODE_NAMES.index(self.mode)

  def _blend(self, field: str) -> float:
    neutral, full = getattr(MODES["neutral"], field), getattr(MODES[self.mode], field)
    return neutral + self.intensity * (full - neutral)

  def apply_style(self, style: visemes.SpeakerStyle) -> visemes.SpeakerStyle:
    """The speaker's articulation under this mode."""
    return dataclasses.replace(
        style, jaw=style.jaw * self._blend("jaw"), rounding=style.rounding * self._blend("rounding"),
        spreading=style.spreading * self._blend("spreading"),
        smile=style.smile + self._blend("smile"))

  def prosody(self, strength: float) -> dict[str, float]:
    """espeak offsets {'pitch', 'rate' (relative), 'volume'} scaled by `strength` (0: none)."""
    return {k: strength * self._blend(k) for k in ("pitch", "rate", "volume")}

  def vector(self) -> np.ndarray:
    """(len(MODES) + 1,) float32 ground truth: one-hot mode, then intensity."""
    out = np.zeros(len(MODE_NAMES) + 1, np.float32)
    out[self.index] = 1.0
    out[-1] = self.intensity
    return out

  def to_json(self) -> dict[str, Any]:
    return dict(mode=self.mode, index=self.index, intensity=round(self.intensity, 4),
                jaw_gain=round(self._blend("jaw"), 4))


def sample_latent(rng: np.random.Generator) -> ClipLatent:
  return ClipLatent(mode=str(rng.choice(MODE_NAMES)), intensity=float(rng.uniform(0.3, 1.0)))
