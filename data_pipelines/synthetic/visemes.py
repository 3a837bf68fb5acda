"""Phoneme timings -> mouth expression coefficients at video rate, with per-speaker style.

Synthetic stage-1 data must reproduce what MemFace is about: the audio does not determine the mouth.
Here a phoneme maps to a viseme target, neighbouring targets blend by Cohen-Massaro dominance
functions (co-articulation: lips take the shape of the next rounded vowel through a /s/, but a /p/
always closes), and a `SpeakerStyle` then bends the result (amplitude, rounding vs spreading habits,
smile habit, left/right asymmetry, how early the mouth anticipates). Two speakers saying the same
phoneme therefore get different coefficients; `variability` adds within-speaker variation too.

Coefficients are named (see `NAMES`) and mapped to a face model by name (`to_components`), so this
file does not depend on any face model's internals. Frame f is sampled at time f / fps.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

FPS = 25.0
NAMES = ("jaw_open", "lip_round", "lip_stretch", "lip_press", "lip_tuck", "smile_left",
         "smile_right", "mouth_shift")  # The first five follow visemes; the rest are style habits.

# Viseme targets over (jaw_open, lip_round, lip_stretch, lip_press, lip_tuck), each in [0, 1].
_TARGETS = {
    "rest": (0.05, 0.0, 0.0, 0.0, 0.0),
    "PBM": (0.0, 0.1, 0.0, 1.0, 0.0),   # bilabial closure
    "FV": (0.12, 0.0, 0.1, 0.0, 1.0),   # lower lip under the upper teeth
    "TH": (0.25, 0.0, 0.15, 0.0, 0.0),
    "CDT": (0.2, 0.0, 0.25, 0.0, 0.0),  # alveolars: teeth close, lips free
    "SH": (0.2, 0.7, 0.0, 0.0, 0.0),    # postalveolars protrude the lips
    "KG": (0.35, 0.0, 0.1, 0.0, 0.0),
    "R": (0.2, 0.5, 0.0, 0.0, 0.0),
    "W": (0.1, 0.9, 0.0, 0.0, 0.0),
    "AA": (0.9, 0.0, 0.2, 0.0, 0.0),    # open vowels
    "EH": (0.55, 0.0, 0.45, 0.0, 0.0),
    "ER": (0.4, 0.35, 0.1, 0.0, 0.0),
    "IY": (0.25, 0.0, 0.8, 0.0, 0.0),   # close spread vowels
    "OH": (0.6, 0.7, 0.0, 0.0, 0.0),
    "OO": (0.25, 0.9, 0.0, 0.0, 0.0),
}
_VOWELS = {"AA", "EH", "ER", "IY", "OH", "OO"}
# Per-component dominance: how strongly a viseme holds each articulator against its neighbours.
# Closures (press, tuck) are all-or-nothing, so they dominate strongly where they occur and every other
# viseme holds them open firmly; lip shape of alveolars/velars is weak and follows the vowels.
_DOMINANCE = {
    "rest": (1.5, 1.5, 1.5, 1.5, 1.5),
    "PBM": (3.0, 0.5, 0.5, 8.0, 2.0),
    "FV": (2.0, 0.3, 0.3, 2.0, 8.0),
    "SH": (1.0, 3.0, 1.0, 2.0, 2.0),
    "W": (1.0, 4.0, 1.0, 2.0, 2.0),
    "R": (1.0, 2.0, 1.0, 2.0, 2.0),
}
_CONSONANT_DOMINANCE = (1.0, 0.3, 0.3, 2.0, 2.0)
_VOWEL_DOMINANCE = (2.0, 2.5, 2.0, 3.0, 3.0)
_HOLD = 0.6  # Fraction of a segment over which its dominance stays at its peak.
_SPREAD_S = 0.045  # Co-articulation time constant (scaled by style.smoothness).

# espeak-ng English mnemonics (ph_english); unknown names fall back by prefix, then to 'EH'.
_PHONEME_TO_VISEME = {
    **dict.fromkeys(["_", "_:", "_!", "_^_", "?", "||", "|"], "rest"),
    **dict.fromkeys(["p", "b", "m"], "PBM"),
    **dict.fromkeys(["f", "v"], "FV"),
    **dict.fromkeys(["T", "D"], "TH"),
    **dict.fromkeys(["t", "d", "n", "l", "s", "z", "t#", "d#", "n-", "l/", "t2", "d2"], "CDT"),
    **dict.fromkeys(["S", "Z", "tS", "dZ"], "SH"),
    **dict.fromkeys(["k", "g", "N", "h", "x"], "KG"),
    **dict.fromkeys(["r", "r-", "*"], "R"),
    **dict.fromkeys(["w", "W"], "W"),
    **dict.fromkeys(["a", "a#", "A:", "A@", "aa", "aI", "aI@", "aI3", "aU", "aU@", "0", "V"], "AA"),
    **dict.fromkeys(["e", "E", "e@", "eI", "@", "@2", "@5", "@L", "@-", "e#"], "EH"),
    **dict.fromkeys(["3", "3:", "3:r", "@r"], "ER"),
    **dict.fromkeys(["i", "i:", "I", "I#", "I2", "i@", "i@3", "y", "j"], "IY"),
    **dict.fromkeys(["O", "O:", "O@", "oU", "OI", "o@"], "OH"),
    **dict.fromkeys(["u", "u:", "U", "U@", "u@"], "OO"),
}


@dataclasses.dataclass(frozen=True)
class SpeakerStyle:
  """How one speaker articulates; neutral defaults reproduce the viseme targets.

  Attributes:
    amplitude: overall articulation gain (mumbler < 1 < over-articulator).
    jaw: extra gain on jaw opening.
    rounding: gain on lip rounding/protrusion.
    spreading: gain on lip stretching.
    smile: resting smile habit, added to both smile components and growing with lip stretch.
    asymmetry: in [-1, 1]; > 0 puts more of the smile on the left and shifts the articulating
      mouth sideways (speaking out of one side of the mouth).
    lead_s: how early the mouth anticipates the sound (seconds).
    smoothness: scales co-articulation widths (> 1 blends neighbours more).
    variability: std of per-phoneme random gain (within-speaker one-to-many).
  """
  amplitude: float = 1.0
  jaw: float = 1.0
  rounding: float = 1.0
  spreading: float = 1.0
  smile: float = 0.0
  asymmetry: float = 0.0
  lead_s: float = 0.04
  smoothness: float = 1.0
  variability: float = 0.0

  @classmethod
  def sample(cls, rng: np.random.Generator) -> SpeakerStyle:
    """A random but plausible speaker."""
    return cls(amplitude=rng.uniform(0.6, 1.3), jaw=rng.uniform(0.7, 1.3),
               rounding=rng.uniform(0.6, 1.4), spreading=rng.uniform(0.6, 1.4),
               smile=rng.uniform(0.0, 0.4), asymmetry=rng.uniform(-0.4, 0.4),
               lead_s=rng.uniform(0.0, 0.08), smoothness=rng.uniform(0.7, 1.5),
               variability=rng.uniform(0.0, 0.15))


def viseme_of(phoneme: str) -> str:
  """Viseme class of an espeak phoneme mnemonic (stress marks and unknown suffixes tolerated)."""
  name = phoneme.strip("',%=")
  while name:
    if name in _PHONEME_TO_VISEME:
      return _PHONEME_TO_VISEME[name]
    name = name[:-1]
  return "EH"


def _dominance(viseme: str) -> tuple[float, ...]:
  if viseme in _DOMINANCE:
    return _DOMINANCE[viseme]
  return _VOWEL_DOMINANCE if viseme in _VOWELS else _CONSONANT_DOMINANCE


def mouth_track(phonemes: Sequence[tuple[float, float, str]], style: SpeakerStyle = SpeakerStyle(),
                num_frames: int | None = None, fps: float = FPS,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
  """Mouth coefficients sampled at `fps` for a phoneme segmentation.

  Each segment i contributes its target T_i with a dominance (Cohen & Massaro, 1993) that is flat
  over the middle of the segment and decays outside it, D_i(t) = a_i exp(-(r_i(t) / w)^1.5) with
  r_i(t) = max(0, |t - c_i| - hold * len_i / 2), c_i its centre moved earlier by `style.lead_s`; the
  blend is sum_i D_i T_i / sum_i D_i per component. Long segments reach their target, short ones mix.

  Args:
    phonemes: (start_s, end_s, mnemonic) segments, as `speech_audio.SpeechClip.phonemes`.
    style: the speaker's articulation habits.
    num_frames: output length; by default ceil(end * fps), the frames whose time f / fps lies
      before the last segment's end (as audio.num_video_frames for the clip's samples).
    fps: video frame rate.
    rng: needed only when `style.variability` > 0.

  Returns:
    (T, len(NAMES)) float32 coefficients and `NAMES`.
  """
  if num_frames is None:
    end = max((e for _, e, _ in phonemes), default=0.0)
    num_frames = max(1, int(np.ceil(end * fps - 1e-6)))
  t = np.arange(num_frames, dtype=np.float64)[:, None] / fps
  if not phonemes:
    phonemes = [(0.0, num_frames / fps, "_")]
  visemes = [viseme_of(p) for _, _, p in phonemes]
  targets = np.array([_TARGETS[v] for v in visemes])  # (P, 5)
  dominance = np.array([_dominance(v) for v in visemes])
  if style.variability > 0:
    if rng is None:
      raise ValueError("style.variability > 0 needs an rng")
    gain = 1.0 + style.variability * rng.standard_normal((len(phonemes), 1))
    targets = np.clip(targets * gain, 0.0, 1.0)
  starts = np.array([s for s, _, _ in phonemes])
  ends = np.array([e for _, e, _ in phonemes])
  centres = 0.5 * (starts + ends) - style.lead_s
  reach = np.maximum(np.abs(t - centres[None]) - 0.5 * _HOLD * (ends - starts)[None], 0.0)
  d = dominance[None] * np.exp(-(reach / (_SPREAD_S * style.smoothness)) ** 1.5)[..., None]
  blend = (d * targets[None]).sum(1) / (d.sum(1) + 1e-8)  # (T, 5)
  return _apply_style(blend, style), NAMES


def _apply_style(blend: np.ndarray, style: SpeakerStyle) -> np.ndarray:
  jaw, rnd, stretch, press, tuck = blend.T
  a = style.amplitude
  jaw = a * style.jaw * jaw
  rnd = a * style.rounding * rnd
  stretch = a * style.spreading * stretch
  smile = style.smile * (1.0 + stretch) * (1.0 - 0.5 * rnd)  # Rounding hides a smile.
  left, right = 1.0 + style.asymmetry, 1.0 - style.asymmetry
  shift = 0.3 * style.asymmetry * (stretch + rnd)
  out = np.stack([jaw, rnd, stretch, np.minimum(press, 1.0), tuck, smile * left, smile * right,
                  shift], -1)
  return out.astype(np.float32)


def to_components(coeffs: np.ndarray, names: Sequence[str], target_names: Sequence[str],
                  fold_smile: bool = True) -> np.ndarray:
  """Re-indexes named coefficients to another model's component names (missing ones are 0).

  With `fold_smile`, a target without smile components but with `lip_stretch` receives the mean
  smile in its stretch, so the speaker's smile habit survives on a smaller face model.
  """
  index = {n: i for i, n in enumerate(names)}
  out = np.zeros(coeffs.shape[:-1] + (len(target_names),), coeffs.dtype)
  for j, n in enumerate(target_names):
    if n in index:
      out[..., j] = coeffs[..., index[n]]
  smiles = [index[n] for n in ("smile_left", "smile_right") if n in index]
  if (fold_smile and smiles and "lip_stretch" in target_names
      and not {"smile_left", "smile_right"} & set(target_names)):
    out[..., list(target_names).index("lip_stretch")] += coeffs[..., smiles].mean(-1)
  return out
