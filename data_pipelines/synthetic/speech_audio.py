"""Speech synthesis with phoneme timings, through espeak-ng's C API (ctypes).

Synthetic talking-head data needs audio *and* the phoneme segmentation that drove it, so that mouth
motion (see `visemes.py`) is in sync by construction. espeak-ng gives both: PCM buffers and
`espeakEVENT_PHONEME` events with their time in the output. No Python binding is needed; the shared
library `libespeak-ng.so.1` is loaded with ctypes (install: `apt-get install espeak-ng libespeak-ng1`).

espeak keeps global state (voice, parameters, callback), so one process-wide lock guards every call and
the library is initialised once. All parameters are set on every call, so calls never leak settings.

Reproducibility: espeak's waveform generator keeps state across calls (glottal phase, pitch flutter,
libc rand() for noise), so the same call gives sample-level different audio (and +-1 ms timing) depending
on what the process synthesised before. A fixed sequence of calls in a fresh process is reproducible:
synthesise a dataset serially, in a fixed order, and store the result.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import math
import os
import threading

import numpy as np
from scipy import signal

SAMPLE_RATE = 16000  # Output rate: what every audio front end in the repo expects.
INSTALL_HINT = "apt-get install -y espeak-ng libespeak-ng1"
LIBRARY_ENV = "TALKINGMEM_ESPEAK_LIB"  # Optional explicit path to the shared library.

# speak_lib.h constants (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000  # Return an error instead of exit() when espeak-ng-data is missing.
_CHARS_AUTO = 0
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_EVENT_SAMPLERATE = 8
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE, _PARAM_WORDGAP = 1, 2, 3, 4, 7
_EE_OK = 0


class EspeakUnavailableError(RuntimeError):
  """libespeak-ng cannot be loaded or initialised."""


@dataclasses.dataclass(frozen=True)
class SpeechClip:
  """Mono float32 audio in [-1, 1] and its phoneme segmentation.

  `phonemes` holds (start_s, end_s, mnemonic) in time order, covering the clip without gaps; the
  mnemonics are espeak's ASCII phoneme names (e.g. 'aI', '@2', 'tS'; '_' and '_:' are pauses).
  """
  audio: np.ndarray
  sample_rate: int
  phonemes: list[tuple[float, float, str]]

  @property
  def duration(self) -> float:
    return len(self.audio) / self.sample_rate


class _EventId(ctypes.Union):
  _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
  _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
              ("text_position", ctypes.c_int), ("length", ctypes.c_int),
              ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
              ("user_data", ctypes.c_void_p), ("id", _EventId)]


class _VoiceSpec(ctypes.Structure):
  _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p),
              ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte),
              ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int),
              ("spare", ctypes.c_void_p)]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(_Event))


class _Espeak:
  """The loaded library plus the buffers its callback fills; use only under `_LOCK`."""

  def __init__(self, library: str | None = None):
    lib = load_library(library)
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_VoiceSpec)]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_Synchronize.argtypes = []
    for fn in ("espeak_SetVoiceByName", "espeak_SetVoiceByProperties", "espeak_SetParameter",
               "espeak_Synth", "espeak_Synchronize"):
      getattr(lib, fn).restype = ctypes.c_int
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                                 _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT)
    if rate <= 0:
      raise EspeakUnavailableError(
          f"espeak_Initialize failed ({rate}): espeak-ng-data not found; run `{INSTALL_HINT}`")
    self.lib = lib
    self.native_rate = rate
    self.chunks: list[np.ndarray] = []
    self.events: list[tuple[int, str]] = []  # (audio_position ms, phoneme mnemonic)
    self._callback = _SynthCallback(self._on_synth)  # Keep a reference: espeak holds a raw pointer.
    lib.espeak_SetSynthCallback(self._callback)

  def _on_synth(self, wav, num_samples: int, events) -> int:
    if wav and num_samples > 0:
      self.chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
    i = 0
    while events and events[i].type != _EVENT_LIST_TERMINATED:
      event = events[i]
      if event.type == _EVENT_PHONEME:
        name = bytes(event.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
        self.events.append((event.audio_position, name))
      elif event.type == _EVENT_SAMPLERATE:
        self.native_rate = event.id.number
      i += 1
    return 0  # Continue synthesis.

  def set_voice(self, voice: str, gender: int) -> None:
    if gender:
      spec = _VoiceSpec(languages=voice.encode(), gender=gender)
      status = self.lib.espeak_SetVoiceByProperties(ctypes.byref(spec))
    else:
      status = self.lib.espeak_SetVoiceByName(voice.encode())
    if status != _EE_OK:
      raise ValueError(f"espeak-ng has no voice {voice!r} (gender {gender}); "
                       "list them with `espeak-ng --voices`")

  def synth(self, text: str) -> tuple[np.ndarray, int, list[tuple[int, str]]]:
    self.chunks, self.events = [], []
    data = text.encode("utf-8") + b"\0"
    status = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_AUTO, None, None)
    if status != _EE_OK:
      raise RuntimeError(f"espeak_Synth failed with status {status}")
    self.lib.espeak_Synchronize()
    audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
    return audio, self.native_rate, self.events


def load_library(library: str | None) -> ctypes.CDLL:
  """libespeak-ng from `library`, $TALKINGMEM_ESPEAK_LIB or the system (else how to install it)."""
  candidates = [library or os.environ.get(LIBRARY_ENV), "libespeak-ng.so.1",
                ctypes.util.find_library("espeak-ng")]
  errors = []
  for name in [c for c in candidates if c]:
    try:
      return ctypes.CDLL(name)
    except OSError as e:
      errors.append(str(e))
  raise EspeakUnavailableError(
      f"libespeak-ng is not installed (tried {', '.join(errors) or 'nothing'}); "
      f"install it with `{INSTALL_HINT}` or point ${LIBRARY_ENV} at libespeak-ng.so.1")


_LOCK = threading.Lock()
_ENGINE: _Espeak | None = None


def _engine() -> _Espeak:
  global _ENGINE
  if _ENGINE is None:
    _ENGINE = _Espeak()
  return _ENGINE


def is_available() -> bool:
  """Whether espeak-ng can be loaded and initialised here (for tests and data preparation)."""
  with _LOCK:
    try:
      _engine()
      return True
    except EspeakUnavailableError:
      return False


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
  """Polyphase resampling (anti-aliased), float32 out."""
  if rate_in == rate_out:
    return audio.astype(np.float32)
  g = math.gcd(rate_in, rate_out)
  return signal.resample_poly(audio, rate_out // g, rate_in // g).astype(np.float32)


def synthesize(text: str, voice: str = "en", rate: int = 175, pitch: int = 50,
               pitch_range: int = 50, volume: int = 100, word_gap: int = 0, gender: int = 0,
               sample_rate: int = SAMPLE_RATE) -> SpeechClip:
  """Speaks `text` and returns the audio at `sample_rate` with its phoneme segmentation.

  Args:
    text: UTF-8 text.
    voice: an espeak voice name, optionally with a variant ('en-us', 'en+f3', 'en-gb-x-rp+m2').
    rate: words per minute, 80..450.
    pitch: base pitch 0..100 (50 normal).
    pitch_range: intonation range 0..100 (0 monotone, 50 normal).
    volume: 0..200 (100 normal).
    word_gap: extra pause between words, in units of 10 ms.
    gender: 0 selects by name; 1 (male) or 2 (female) selects a voice of that language by properties.
    sample_rate: output rate; espeak's native rate (22050 Hz) is resampled to it.
  """
  with _LOCK:
    engine = _engine()
    engine.set_voice(voice, gender)
    for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range),
                         (_PARAM_VOLUME, volume), (_PARAM_WORDGAP, word_gap)):
      engine.lib.espeak_SetParameter(param, int(value), 0)
    pcm, native_rate, events = engine.synth(text)
  audio = resample(pcm.astype(np.float32) / 32768.0, native_rate, sample_rate)
  return SpeechClip(audio=audio, sample_rate=sample_rate,
                    phonemes=_segments(events, len(audio) / sample_rate))


def _segments(events: list[tuple[int, str]], duration: float) -> list[tuple[float, float, str]]:
  """Phoneme onsets (ms) -> contiguous (start_s, end_s, name); each ends where the next starts.

  Leading silence before the first onset becomes a pause '_', so the segments cover [0, duration].
  """
  if not events or events[0][0] > 0:
    events = [(0, "_")] + events
  starts = [min(ms / 1000.0, duration) for ms, _ in events]
  ends = starts[1:] + [duration]
  return [(s, e, name) for s, e, (_, name) in zip(starts, ends, events) if e > s]
