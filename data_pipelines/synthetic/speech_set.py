"""Synthetic multi-speaker speech + face-coefficient dataset for MemFace stage 1 (and stage 2).

Why synthetic: the audio-to-expression problem is one-to-many (the same sound is articulated
differently by different people, and differently by one person on different days). This set makes
that structure explicit and controllable:

  * text: GRID-style commands ("bin blue at f two now") and free sentences from a word list, so the
    phoneme inventory is broad and no download is needed;
  * audio: espeak-ng, 16 kHz mono, T / 25 s long for T frames; each speaker owns 2-3 voices
    (accent x voice variant x pitch x speed) drawn from a shared pool, so voices overlap across
    speakers and the audio only partly identifies who speaks; per-clip pitch / speed jitter,
    microphone gain, leading and trailing silence and a little noise;
  * mouth: phoneme -> viseme -> coefficients with co-articulation (`visemes.mouth_track`), bent by a
    per-speaker `SpeakerStyle` (amplitude, rounding / spreading habits, smile habit, asymmetry,
    anticipation, within-speaker variability) -> the synthetic face model's expression components;
  * optional (`clip_latent=True`): a per-clip speaking mode (`clip_latent.py`: happy / sad /
    emphatic / neutral x intensity) that bends the mouth strongly and the audio only weakly through
    prosody (`latent_prosody` scales its pitch / rate / volume offsets): the mouth is then
    underdetermined by the audio; ground truth in coeffs.npz `clip_latent` and meta.json `latent`;
  * optional (`mouth_interior=True`, with `render`): per-speaker teeth, tongue and inner-lip detail
    (`engine/appearance.MouthInterior`) that only shows as the mouth opens;
  * the rest of the face: blinks, brow motion, gaze and head pose drawn independently of the audio;
  * optional frames rendered by the synthetic renderer at 25 fps (`render=False` skips them: stage 1
    needs only audio, coefficients and vertices).

Output, in the per-speaker layout of `data_pipelines/speech/layout.py` (real data uses the same):

  out/face_model.npz  dataset_info.json
  out/spk000/speaker.json            style, voices, identity (for analysis only)
  out/spk000/clip0000/audio.wav      16 kHz mono int16
                      coeffs.npz     exp (T, n_exp), id (n_id,), pose (T, 6), exp_names, fps
                      mouth_vertices.npy  (T, M, 3) model space (pose-free)
                      meta.json      text, voice settings, phoneme segmentation
                      video.mp4      25 fps with the audio muxed in (render=True only)

Determinism: every clip is generated in a fresh worker process (forkserver, one task per process),
so espeak-ng's cross-call state (see `speech_audio.py`) never leaks between clips and each clip,
audio included, is a pure function of (seed, speaker, clip): the output does not depend on the
worker count or on the order. Text, voice settings, style, pose, blinks and the coefficient / vertex
arrays are drawn from numpy generators keyed on (seed, speaker, clip); coefficients depend on audio
only through espeak's phoneme timings, which are reproducible in a fresh process.

  python -m data_pipelines.synthetic.speech_set --out DIR --num_speakers 16 \
      --clips_per_speaker 40 [--render --size 64] [--clip_latent] [--mouth_interior] [--workers N]
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import pathlib
import shutil
import sys
import time
from typing import Any

import cv2
import numpy as np

from data_pipelines.user_errors import run_cli
from data_pipelines import video_io
from data_pipelines.speech import layout as speech_layout
from data_pipelines.synthetic import clip_latent as clip_latent_lib
from data_pipelines.synthetic import generator_cli
from data_pipelines.synthetic import speech_audio as speech
from data_pipelines.synthetic import video_set
from data_pipelines.synthetic import visemes
from data_pipelines.synthetic.engine import appearance as appearance_lib
from data_pipelines.synthetic.engine import face_model as face_model_lib
from data_pipelines.synthetic.engine import motion as motion_lib
from data_pipelines.synthetic.engine import scene as scene_lib

FPS = 25
SAMPLE_RATE = speech.SAMPLE_RATE
IDENTITY_OFFSET = 1 << 20  # Face identities distinct from the MCNet synthetic set's.
_SPEAKER_KEY, _CLIP_KEY = 2, 3  # spawn_key namespaces (video_set.py uses 0 and 1).
_PLAN, _MOTION, _AUDIO, _LATENT = 0, 1, 2, 3  # Independent streams of one clip.
_MOUTH_INTERIOR = 2  # Speaker stream of the mouth interior (1 is the scene).

# --------------------------------------------------------------------------------------------------
# Text.

GRID = dict(
    command=("bin", "lay", "place", "set"), colour=("blue", "green", "red", "white"),
    preposition=("at", "by", "in", "with"), letter=tuple("abcdefghijklmnopqrstuvxyz"),
    digit=("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    adverb=("again", "now", "please", "soon"))
SUBJECTS = ("the farmer", "my brother", "a young boy", "the old woman", "her father", "the pilot",
            "a teacher", "the captain", "our neighbour", "the doctor", "my mother", "a sailor",
            "the children", "his wife", "the baker", "a tourist", "the judge", "the queen")
VERBS = ("bought", "painted", "found", "moved", "shared", "watched", "fixed", "washed", "opened",
         "carried", "pushed", "threw", "chose", "loved", "measured", "borrowed", "fed", "sold")
OBJECTS = ("a blue umbrella", "the wooden boat", "five ripe peaches", "an old map",
           "the broken fence", "a cup of coffee", "the heavy box", "some fresh bread",
           "a tiny puppy", "the purple shoes", "a bowl of soup", "the shiny watch",
           "two cheap chairs", "a huge pumpkin", "the yellow moon", "a loaf of cheese",
           "the smooth rope", "a brave whale")
PLACES = ("by the river", "in the garden", "at the market", "near the church", "on the roof",
          "under the bridge", "behind the school", "through the forest", "across the valley",
          "beside the pool", "in the morning", "after the show", "before the storm", "with joy")


def sample_sentence(rng: np.random.Generator) -> str:
  """A GRID command (40 %) or a free subject-verb-object sentence (60 %)."""
  if rng.random() < 0.4:
    return " ".join(str(rng.choice(GRID[k])) for k in
                    ("command", "colour", "preposition", "letter", "digit", "adverb"))
  words = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)]
  if rng.random() < 0.7:
    words.append(rng.choice(PLACES))
  return " ".join(str(w) for w in words) + "."


# --------------------------------------------------------------------------------------------------
# Speakers and clips (pure functions of the seed and indices).

ACCENTS = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan")
VARIANTS = ("m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", "f5")


@dataclasses.dataclass(frozen=True)
class Voice:
  """One espeak voice setting (see `speech_audio.synthesize`)."""
  voice: str
  pitch: int
  pitch_range: int
  rate: int
  volume: int = 100


@dataclasses.dataclass(frozen=True)
class SpeakerProfile:
  """Who speaks: face identity, articulation style, voices and microphone."""
  name: str
  index: int
  identity_index: int
  style: visemes.SpeakerStyle
  voices: tuple[Voice, ...]
  gain: float
  head_motion: str  # motion.head_pose style: 'calm' or 'lively'.

  def to_json(self) -> dict[str, Any]:
    return dict(name=self.name, index=self.index, identity_index=self.identity_index,
                style=dataclasses.asdict(self.style),
                voices=[dataclasses.asdict(v) for v in self.voices],
                gain=self.gain, head_motion=self.head_motion)


@dataclasses.dataclass(frozen=True)
class ClipPlan:
  """What one clip says and how (drawn before synthesis)."""
  speaker: str
  name: str
  index: int
  text: str
  voice: Voice
  lead_silence_s: float
  tail_silence_s: float
  noise_std: float
  latent: clip_latent_lib.ClipLatent | None = None


def speaker_name(index: int) -> str:
  return f"spk{index:03d}"


def clip_name(index: int) -> str:
  return f"clip{index:04d}"


def speaker_profile(seed: int, index: int) -> SpeakerProfile:
  rng = video_set.keyed_rng(seed, _SPEAKER_KEY, index)
  style = visemes.SpeakerStyle.sample(rng)
  voices = []
  for _ in range(int(rng.integers(2, 4))):
    voices.append(Voice(voice=f"{rng.choice(ACCENTS)}+{rng.choice(VARIANTS)}",
                        pitch=int(rng.integers(25, 76)), pitch_range=int(rng.integers(30, 81)),
                        rate=int(rng.integers(140, 201))))
  return SpeakerProfile(name=speaker_name(index), index=index,
                        identity_index=IDENTITY_OFFSET + index, style=style, voices=tuple(voices),
                        gain=float(rng.uniform(0.5, 1.0)),
                        head_motion=str(rng.choice(["calm", "lively"])))


def clip_plan(seed: int, profile: SpeakerProfile, index: int, text: str | None = None,
              voice: Voice | None = None, latent: bool | clip_latent_lib.ClipLatent = False,
              latent_prosody: float = 0.25) -> ClipPlan:
  """The clip's text and voice; `text` / `voice` override the drawn ones (the draws still happen,
  so the rest of the clip is unchanged). `latent`: True draws a speaking mode (its own stream, so
  nothing else changes), or pass one; its prosody, scaled by `latent_prosody`, shifts the voice."""
  rng = video_set.keyed_rng(seed, _CLIP_KEY, profile.index, index, _PLAN)
  drawn_text = sample_sentence(rng)
  base = profile.voices[int(rng.integers(len(profile.voices)))]
  drawn_voice = dataclasses.replace(
      base, pitch=int(np.clip(base.pitch + rng.integers(-6, 7), 0, 100)),
      rate=int(np.clip(base.rate * rng.uniform(0.9, 1.1), 80, 450)))
  voice = voice if voice is not None else drawn_voice
  if latent is True:
    latent = clip_latent_lib.sample_latent(
        video_set.keyed_rng(seed, _CLIP_KEY, profile.index, index, _LATENT))
  if latent:
    shift = latent.prosody(latent_prosody)
    voice = dataclasses.replace(
        voice, pitch=int(np.clip(round(voice.pitch + shift["pitch"]), 0, 100)),
        rate=int(np.clip(round(voice.rate * (1 + shift["rate"])), 80, 450)),
        volume=int(np.clip(round(voice.volume + shift["volume"]), 0, 200)))
  return ClipPlan(speaker=profile.name, name=clip_name(index), index=index,
                  text=text if text is not None else drawn_text, voice=voice,
                  latent=latent or None,
                  lead_silence_s=float(rng.uniform(0.05, 0.3)),
                  tail_silence_s=float(rng.uniform(0.05, 0.3)),
                  noise_std=float(rng.uniform(0.0005, 0.003)))


def _pad_silence(clip: speech.SpeechClip, lead_s: float, tail_s: float
                 ) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
  lead, tail = int(round(lead_s * SAMPLE_RATE)), int(round(tail_s * SAMPLE_RATE))
  audio = np.pad(clip.audio, (lead, tail))
  shift = lead / SAMPLE_RATE
  phonemes = [(0.0, shift, "_")] + [(s + shift, e + shift, p) for s, e, p in clip.phonemes]
  end = len(audio) / SAMPLE_RATE
  phonemes.append((phonemes[-1][1], end, "_"))
  return audio, [p for p in phonemes if p[1] > p[0]]


def _brows(rng: np.random.Generator, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
  """Slow brow raise / frown independent of the audio."""
  raise_ = np.clip(rng.uniform(0, 0.4) * motion_lib.smooth_noise(rng, num_frames, 0.8 * FPS), 0, 1)
  frown = np.clip(rng.uniform(0, 0.3) * motion_lib.smooth_noise(rng, num_frames, 1.0 * FPS), 0, 1)
  return raise_, frown


def speaker_identity(model: face_model_lib.FaceModel, seed: int, profile: SpeakerProfile,
                     mouth_interior: bool = False):
  """The speaker's face (shape, appearance and, with `mouth_interior`, its mouth's inside)."""
  identity = video_set.sample_identity(model, seed, profile.identity_index)
  if mouth_interior:
    rng = video_set.keyed_rng(seed, _SPEAKER_KEY, profile.index, _MOUTH_INTERIOR)
    identity = dataclasses.replace(identity, mouth=appearance_lib.sample_mouth_interior(rng))
  return identity


def generate_clip(model: face_model_lib.FaceModel, seed: int, profile: SpeakerProfile,
                  plan: ClipPlan, render: bool = False, size: int = 64,
                  mouth_interior: bool = False) -> dict[str, Any]:
  """Audio, per-frame coefficients / pose / mouth vertices (and frames) of one clip.

  Call in a fresh process for bit-reproducible audio (see the module docstring).
  """
  voice = plan.voice
  spoken = speech.synthesize(plan.text, voice=voice.voice, rate=voice.rate, pitch=voice.pitch,
                             pitch_range=voice.pitch_range, volume=voice.volume)
  audio, phonemes = _pad_silence(spoken, plan.lead_silence_s, plan.tail_silence_s)
  # Whole frames of audio (T / 25 s), so a video of T frames and its audio end together.
  samples_per_frame = SAMPLE_RATE // FPS
  num_frames = -(-len(audio) // samples_per_frame)
  audio = np.pad(audio, (0, num_frames * samples_per_frame - len(audio)))
  audio_rng = video_set.keyed_rng(seed, _CLIP_KEY, profile.index, plan.index, _AUDIO)
  audio = profile.gain * audio + plan.noise_std * audio_rng.standard_normal(len(audio))
  audio = np.clip(audio, -1.0, 1.0).astype(np.float32)

  rng = video_set.keyed_rng(seed, _CLIP_KEY, profile.index, plan.index, _MOTION)
  style = plan.latent.apply_style(profile.style) if plan.latent else profile.style
  mouth, names = visemes.mouth_track(phonemes, style, num_frames, FPS, rng)
  exp = visemes.to_components(mouth, names, model.exp_names)
  named_extra = {}
  named_extra["blink_left"], named_extra["blink_right"] = motion_lib.blinks(rng, num_frames, FPS)
  named_extra["brow_raise"], named_extra["brow_frown"] = _brows(rng, num_frames)
  for name, track in named_extra.items():
    if name in model.exp_names:
      exp[:, model.exp_index(name)] = track
  pose = motion_lib.head_pose(rng, num_frames, FPS, profile.head_motion)
  gaze = motion_lib.gaze_track(rng, num_frames, FPS, pose[:, 0].astype(np.float64))

  identity = speaker_identity(model, seed, profile, mouth_interior)
  id_coeffs = identity.id_coeffs.astype(np.float32)
  vertices = model.vertices(id_coeffs, exp)[:, model.mouth_vertex_ids].astype(np.float32)
  out = dict(audio=audio, phonemes=phonemes, exp=exp.astype(np.float32), id=id_coeffs,
             pose=pose.astype(np.float32), gaze=gaze.astype(np.float32), mouth_vertices=vertices)
  if render:
    scene = scene_lib.sample_scene(video_set.keyed_rng(seed, _SPEAKER_KEY, profile.index, 1))
    clip_motion = motion_lib.ClipMotion(pose=pose, exp_coeffs=exp, gaze=gaze.astype(np.float32),
                                        occluders=(), style=profile.head_motion)
    out["frames"], _ = video_set.render_clip(model, identity, scene, clip_motion, size)
  return out


def write_clip(clip_dir: pathlib.Path, clip: dict[str, Any], plan: ClipPlan,
               exp_names: tuple[str, ...]) -> None:
  """Writes one clip folder atomically (a temporary folder renamed at the end)."""
  tmp = clip_dir.with_name(f".{clip_dir.name}.tmp{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)
  extra = {} if plan.latent is None else dict(clip_latent=plan.latent.vector())
  speech_layout.write_clip(tmp, clip["audio"], clip["exp"], clip["id"], pose=clip["pose"],
                           mouth_vertices=clip["mouth_vertices"], exp_names=exp_names,
                           sample_rate=SAMPLE_RATE, gaze=clip["gaze"], **extra)
  meta = dict(text=plan.text, voice=dataclasses.asdict(plan.voice), speaker=plan.speaker,
              clip=plan.name, num_frames=int(len(clip["exp"])), fps=FPS,
              duration_s=len(clip["audio"]) / SAMPLE_RATE,
              phonemes=[[round(s, 4), round(e, 4), p] for s, e, p in clip["phonemes"]])
  if plan.latent is not None:
    meta["latent"] = plan.latent.to_json()
  (tmp / "meta.json").write_text(json.dumps(meta) + "\n")
  if "frames" in clip:
    video_io.write_video(tmp / "video.mp4", clip["frames"], fps=FPS, audio_path=tmp / "audio.wav")
  video_io.replace_path(tmp, clip_dir)


# --------------------------------------------------------------------------------------------------
# Workers: one process per clip (forkserver), so espeak starts from the same state every time.

_MODEL: face_model_lib.FaceModel | None = None
_MODULE = "data_pipelines.synthetic.speech_set"  # Not __name__: it is '__main__' under -m.


def _init_worker(model_path: str) -> None:
  global _MODEL
  cv2.setNumThreads(1)  # Parallelism comes from the processes.
  _MODEL = face_model_lib.FaceModel.load(model_path)


def run_clip_task(task: dict[str, Any]) -> dict[str, Any]:
  """Generates and writes the clip of `task` (seed, speaker, clip, render, size, out) in a worker of
  `fresh_process_pool`; returns its speaker, clip, frames and seconds."""
  profile = speaker_profile(task["seed"], task["speaker"])
  plan = clip_plan(task["seed"], profile, task["clip"], latent=task["clip_latent"],
                   latent_prosody=task["latent_prosody"])
  clip = generate_clip(_MODEL, task["seed"], profile, plan, task["render"], task["size"],
                       task["mouth_interior"])
  write_clip(pathlib.Path(task["out"]) / profile.name / plan.name, clip, plan, _MODEL.exp_names)
  return dict(speaker=profile.name, clip=plan.name, frames=len(clip["exp"]),
              seconds=len(clip["audio"]) / SAMPLE_RATE)


@contextlib.contextmanager
def _unnamed_main():
  """Hides the __main__ module's name and file from multiprocessing while the pool lives.

  Otherwise every worker re-imports the launching script first (e.g. talkingmem.main with JAX),
  once per clip here. Workers only need this module, which the forkserver preloads.
  """
  main = sys.modules.get("__main__")
  missing = object()
  saved = {k: getattr(main, k, missing) for k in ("__spec__", "__file__")}
  for key in saved:
    setattr(main, key, None)
  try:
    yield
  finally:
    for key, value in saved.items():
      if value is missing:
        delattr(main, key)
      else:
        setattr(main, key, value)


@contextlib.contextmanager
def fresh_process_pool(workers: int, model_path: str):
  """A pool whose every task runs in a new process forked from a clean server."""
  ctx = multiprocessing.get_context("forkserver")
  ctx.set_forkserver_preload([_MODULE])
  with _unnamed_main(), ctx.Pool(workers, _init_worker, (model_path,), maxtasksperchild=1) as pool:
    yield pool


def generate_speech_dataset(out_dir: str | os.PathLike, *, num_speakers: int = 16,
                            clips_per_speaker: int = 40, seed: int = 0, render: bool = False,
                            size: int = 64, workers: int | None = None, clip_latent: bool = False,
                            latent_prosody: float = 0.25, mouth_interior: bool = False
                            ) -> dict[str, Any]:
  """Writes the dataset (see the module docstring) and returns the dataset_info.json summary.

  Args:
    out_dir: output root (created; existing clips are overwritten).
    num_speakers: speakers, each with its own face, style and voices.
    clips_per_speaker: sentences per speaker.
    seed: global seed; the output is a function of it (and the counts) only.
    render: also render `video.mp4` (25 fps, audio muxed in) at `size` x `size`.
    size: frame size in pixels (even, for H.264).
    workers: parallel processes (default: all CPUs); the output does not depend on it.
    clip_latent: draw a per-clip speaking mode (see the module docstring).
    latent_prosody: how strongly the mode shows in the audio (0: not at all, 1: clearly).
    mouth_interior: per-speaker teeth / tongue / inner-lip detail in the rendered frames.
  """
  if not speech.is_available():
    raise speech.EspeakUnavailableError(f"espeak-ng is needed: {speech.INSTALL_HINT}")
  if render and size % 2:
    raise ValueError(f"mp4 needs an even frame size, got {size}")
  start = time.perf_counter()
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  model = face_model_lib.build_face_model()
  model_path = out / "face_model.npz"
  model.save(model_path)
  for s in range(num_speakers):
    (out / speaker_name(s)).mkdir(exist_ok=True)
    profile = speaker_profile(seed, s)
    (out / profile.name / "speaker.json").write_text(json.dumps(profile.to_json(), indent=1) + "\n")
  tasks = [dict(seed=seed, speaker=s, clip=c, render=render, size=size, out=str(out),
                clip_latent=clip_latent, latent_prosody=latent_prosody,
                mouth_interior=mouth_interior)
           for s in range(num_speakers) for c in range(clips_per_speaker)]
  workers = video_set.pool_size(workers, len(tasks))
  with fresh_process_pool(workers, str(model_path)) as pool:
    results = list(pool.imap(run_clip_task, tasks, chunksize=1))
  seconds = time.perf_counter() - start
  info = dict(
      kind="synthetic_speech", num_speakers=num_speakers, clips_per_speaker=clips_per_speaker,
      num_clips=len(results), num_frames=int(sum(r["frames"] for r in results)),
      audio_seconds=round(float(sum(r["seconds"] for r in results)), 3), fps=FPS,
      sample_rate=SAMPLE_RATE, seed=seed, render=render, size=size if render else None,
      workers=workers, generation_seconds=round(seconds, 3), clip_latent=clip_latent,
      latent_prosody=latent_prosody, mouth_interior=mouth_interior,
      face_model=dict(num_vertices=model.num_vertices, n_id=model.n_id, n_exp=model.n_exp,
                      exp_names=list(model.exp_names), mouth_vertices=len(model.mouth_vertex_ids)),
      mouth_components=list(visemes.NAMES))
  (out / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
  return info


CLI_OPTIONS = {
    "num_speakers": generator_cli.Option(int), "clips_per_speaker": generator_cli.Option(int),
    "seed": generator_cli.Option(int),
    "render": generator_cli.Option(bool, "also render video.mp4 per clip"),
    "size": generator_cli.Option(int, "frame size with --render"),
    "clip_latent": generator_cli.Option(bool, "per-clip speaking mode (one-to-many mouth)"),
    "latent_prosody": generator_cli.Option(float, "how much the mode shows in the audio"),
    "mouth_interior": generator_cli.Option(bool, "per-speaker teeth / tongue detail (--render)")}


def main(argv: list[str] | None = None) -> None:
  generator_cli.main(
      argv, module=_MODULE, function="generate_speech_dataset",
      description=__doc__.split("\n")[0], options=CLI_OPTIONS,
      summary_keys=("num_speakers", "clips_per_speaker", "num_clips", "num_frames",
                    "audio_seconds", "render", "workers", "generation_seconds"))


if __name__ == "__main__":
  run_cli(main)
