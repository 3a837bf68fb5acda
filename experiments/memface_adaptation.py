"""MemFace adaptation from 15 s vs 30 s of a held-out synthetic speaker (paper Sec. 4.2, Table 2).

  # 1. the new speaker's "video": 20 synthetic sentences of a speaker no pre-training set contains,
  #    joined into one 25 fps clip (as prepare_speaker makes of one real video); two roots whose
  #    split.json trains on the first 15 s / 30 s and both test on the same last sentences
  python experiments/memface_adaptation.py data --out workdirs/adapt_exp/data
  # 2. pre-trained stages and the fine-tuning runs: see the "MemFace adaptation" section of
  #    experiments/RESULTS.md for the exact commands
  # 3. held-out errors of every stage-1 / stage-2 workdir on the new speaker's test frames
  python experiments/memface_adaptation.py eval --data workdirs/adapt_exp/data \
      --a2e pre=workdirs/adapt_exp/pre_a2e 15s=... 30s=... --renderer pre=... 15s=... 30s=...

Stage 1 (audio -> mouth coefficients, the inference path of talkingmem/memface/speak.py): mouth-vertex RMSE
and the mouth-shape error against the known ground truth (inner-lip opening MAE / correlation,
talkingmem/metrics/lip_sync.py). Stage 2: L1 of the rendered test frames (ground-truth coefficients,
whole frame and mouth box), with the explicit memory built from the run's own adaptation frames
(15 s or 30 s; the pre-trained renderer is evaluated with both memories).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from data_pipelines import video_io

from data_pipelines.speech import renderer_inputs

from data_pipelines.speech import layout as speech_layout  # noqa: E402

SPEAKER = 20  # Index of the held-out synthetic speaker (pre-training sets use 0-15).
FPS, RATE = 25, 16000
TRAIN_SECONDS = (15, 30)


def make_data(out: pathlib.Path, face_model: pathlib.Path, clips: int, size: int, workers: int) -> dict:
  from data_pipelines.synthetic import speech_set as sd
  raw = out / "_clips"
  raw.mkdir(parents=True, exist_ok=True)
  shutil.copy(face_model, raw / speech_layout.FACE_MODEL)
  tasks = [dict(seed=0, speaker=SPEAKER, clip=c, render=True, size=size, out=str(raw))
           for c in range(clips)]
  todo = [t for t in tasks if not (raw / sd.speaker_name(SPEAKER) / sd.clip_name(t["clip"]) /
                                   "video.mp4").exists()]
  if todo:
    with sd.fresh_process_pool(workers, str(raw / speech_layout.FACE_MODEL)) as pool:
      list(pool.imap(sd.run_clip_task, todo, chunksize=1))
  name = sd.speaker_name(SPEAKER)
  parts = sorted((raw / name).glob("clip*"))
  audio, exp, pose, verts, frames, ident, names = [], [], [], [], [], None, None
  for clip in parts:
    c = speech_layout.read_coeffs(clip / speech_layout.COEFFS)
    n = len(c["exp"])
    wave = speech_layout.read_audio(clip / speech_layout.AUDIO)
    audio.append(np.pad(wave, (0, max(0, n * RATE // FPS - len(wave))))[:n * RATE // FPS])
    exp.append(c["exp"]), pose.append(c["pose"])
    verts.append(np.load(clip / speech_layout.MOUTH_VERTICES))
    frames.append(video_io.read_video(clip / "video.mp4"))
    ident, names = c["id"], c.get("exp_names")
  total = sum(len(e) for e in exp)
  test_start = total - sum(len(e) for e in exp[-4:])  # The last 4 sentences are held out.
  info = {"speaker": name, "clips": len(parts), "frames": total, "test_frames": total - test_start}
  for seconds in TRAIN_SECONDS:
    train_frames = seconds * FPS
    if train_frames > test_start:
      raise ValueError(f"{seconds} s of training needs more than {len(parts)} clips")
    root = out / f"train{seconds}s"
    folder = root / name
    speech_layout.write_clip(folder, np.concatenate(audio), np.concatenate(exp), ident,
                             pose=np.concatenate(pose), mouth_vertices=np.concatenate(verts),
                             exp_names=names)
    video_io.write_video(folder / "video.mp4", np.concatenate(frames), FPS,
                         audio_path=folder / speech_layout.AUDIO)
    (folder / speech_layout.SPLIT).write_text(json.dumps(
        {"train": [[0, train_frames]], "test": [[test_start, total]]}))
    shutil.copy(face_model, root / speech_layout.FACE_MODEL)
    info[f"train{seconds}s"] = {"root": str(root), "train_frames": train_frames,
                                "test": [test_start, total]}
  (out / "info.json").write_text(json.dumps(info, indent=1) + "\n")
  return info


def _pairs(items):
  return dict(item.split("=", 1) for item in items or [])


def eval_a2e(workdir: str, folder: pathlib.Path, train_frames: int, test: tuple[int, int]) -> dict:
  from talkingmem.memface import speak
  from talkingmem.metrics import lip_sync
  stage1 = speak.load_stage1(workdir)
  template = speak.load_template(folder)
  model = template.face_model
  wave = speech_layout.read_audio(folder / speech_layout.AUDIO)
  frames = len(template)
  windows = speak.audio_windows(stage1, wave, frames)
  start, stop = test
  # Windows of the whole clip (features as in training), predictions on the held-out frames only.
  mouth = speak.predict_mouth(stage1, windows[start:stop])
  gt_exp = template.exp[start:stop]
  pred_exp = gt_exp.copy()
  pred_exp[:, stage1.exp_index] = mouth
  vert = lambda e: model.vertices(template.id, e)  # noqa: E731
  pred_v = np.stack([vert(e) for e in pred_exp])
  gt_v = np.stack([vert(e) for e in gt_exp])
  mouth_ids, lm_ids = model.mouth_vertex_ids, np.asarray(model.landmark_vertex_ids)
  out = {"step": stage1.step, "vertex_rmse": lip_sync.vertex_rmse(pred_v[:, mouth_ids], gt_v[:, mouth_ids])}
  out.update(lip_sync.mouth_shape_error(pred_v[:, lm_ids], gt_v[:, lm_ids]))
  mean_exp = gt_exp.copy()
  # Audio-blind reference: the adaptation frames' mean mouth for every test frame.
  mean_exp[:, stage1.exp_index] = template.exp[:train_frames, stage1.exp_index].mean(0)
  mean_v = np.stack([vert(e) for e in mean_exp])
  out["baseline_train_mean_vertex_rmse"] = lip_sync.vertex_rmse(mean_v[:, mouth_ids], gt_v[:, mouth_ids])
  return out


def eval_renderer(workdir: str, folder: pathlib.Path, train_frames: int, test: tuple[int, int]) -> dict:
  import jax
  import jax.numpy as jnp
  from talkingmem.memface import speak
  stage2 = speak.load_stage2(workdir)
  template = speak.load_template(folder)
  c = stage2.config.model
  memory = None
  if stage2.memory_kind == "explicit":
    memory = speak.template_memory(template, stage2, np.arange(train_frames))
    memory = {k: jnp.asarray(v) for k, v in memory.items() if k in ("keys", "values", "valid",
                                                                       "key_scale", "key_mean")}
  elif stage2.memory_kind == "implicit":
    memory = stage2.state.get("memory_stats")
  render = jax.jit(lambda v, r, m, q: stage2.model.apply(v, r, m, q, memory))
  size, patch = stage2.image_size, int(c.patch_size)
  l1, mouth_l1 = [], []
  for start in range(test[0], test[1], 16):
    ex = [renderer_inputs.renderer_example(template.frames[t], template.face_model, template.exp[t],
                                           template.id, template.pose[t], size, patch=patch)
          for t in range(start, min(start + 16, test[1]))]
    batch = {k: np.stack([e[k] for e in ex]) for k in ex[0]}
    pred = np.asarray(render(stage2.variables, batch["rendered"], batch["masked"],
                             batch["mouth_vertices"].reshape(len(ex), -1)))
    err = np.abs(pred - batch["target"])
    l1 += list(err.mean((1, 2, 3)))
    for e, (y0, x0, y1, x1) in zip(err, batch["mouth_box"]):
      mouth_l1.append(e[max(y0, 0):y1, max(x0, 0):x1].mean())
  return {"step": stage2.step, "l1": float(np.mean(l1)), "mouth_l1": float(np.mean(mouth_l1)),
          "memory_frames": train_frames if memory is not None else 0}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  d = sub.add_parser("data")
  d.add_argument("--out", required=True)
  d.add_argument("--face_model", default="workdirs/data/speech_synth_render64/face_model.npz")
  d.add_argument("--clips", type=int, default=20)
  d.add_argument("--size", type=int, default=64)
  d.add_argument("--workers", type=int, default=2)
  e = sub.add_parser("eval")
  e.add_argument("--data", required=True)
  e.add_argument("--a2e", nargs="*", help="NAME=WORKDIR; NAME starting with 15s / 30s uses that root")
  e.add_argument("--renderer", nargs="*", help="NAME=WORKDIR (pre-trained ones: evaluated with both)")
  e.add_argument("--out", default=None)
  args = p.parse_args()
  if args.cmd == "data":
    print(json.dumps(make_data(pathlib.Path(args.out), pathlib.Path(args.face_model), args.clips,
                               args.size, args.workers), indent=1))
    return
  data = pathlib.Path(args.data)
  info = json.loads((data / "info.json").read_text())
  results = {"data": info, "a2e": {}, "renderer": {}}
  for name, workdir in _pairs(args.a2e).items():
    sets = [s for s in TRAIN_SECONDS if name.startswith(f"{s}s")] or [TRAIN_SECONDS[0]]
    split = info[f"train{sets[0]}s"]
    results["a2e"][name] = eval_a2e(workdir, pathlib.Path(split["root"]) / info["speaker"],
                                    split["train_frames"], tuple(split["test"]))
    print(name, results["a2e"][name], flush=True)
  for name, workdir in _pairs(args.renderer).items():
    sets = [s for s in TRAIN_SECONDS if name.startswith(f"{s}s")] or list(TRAIN_SECONDS)
    for s in sets:
      split = info[f"train{s}s"]
      key = name if name.startswith(f"{s}s") else f"{name}+memory{s}s"
      results["renderer"][key] = eval_renderer(workdir, pathlib.Path(split["root"]) / info["speaker"],
                                               split["train_frames"], tuple(split["test"]))
      print(key, results["renderer"][key], flush=True)
  text = json.dumps(results, indent=1)
  if args.out:
    pathlib.Path(args.out).write_text(text + "\n")
  print(text)


if __name__ == "__main__":
  main()
