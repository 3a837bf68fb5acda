"""One generic trainer: `train_and_evaluate(config, workdir)` for every task (see talkingmem/task.py).

Data parallel over a `jax.make_mesh` 'data' axis: the batch is sharded, parameters are replicated
and born on device through jit(out_shardings); the step is jitted once with the state donated.
Non-finite steps are skipped and counted. Checkpoints hold the train state and the data iterator.
"""
from __future__ import annotations

import itertools
import pathlib
import signal
from typing import Any, Sequence

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from talkingmem import checkpointing, console, sharding, summaries
from talkingmem.config_checks import validate_config
from talkingmem.task import Task, get_task, valid_weighted_means


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any  # non-trained collections, e.g. BatchNorm statistics
  skipped_steps: jax.Array


def _split_variables(variables: dict) -> tuple[Any, dict]:
  variables = dict(variables)
  return variables.pop("params"), variables


def create_train_state(task: Task, tx: optax.GradientTransformation, rng: jax.Array, batch: dict
                       ) -> TrainState:
  params, model_state = _split_variables(task.init_variables(rng, batch))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    model_state=model_state, skipped_steps=jnp.zeros((), jnp.int32))


def warm_start(state: TrainState, source: str, state_sharding: Any, fresh: Sequence[str] = ()
               ) -> TrainState:
  """`state` with params and model state from the latest checkpoint of workdir `source`.

  The optimizer state stays the fresh one (zeros for Adam, whatever the parameters), and so do the
  model-state collections named in `fresh` (data-derived state to rebuild, e.g. a new speaker's
  memory). Every other variable must exist in `source` with the same shape (ValueError naming those
  that do not).
  """
  from flax.traverse_util import flatten_dict  # pylint: disable=g-import-not-at-top
  variables, _, step = checkpointing.load_variables(source)
  params, model_state = _split_variables(variables)
  keep = {k: v for k, v in state.model_state.items() if k in fresh}
  loaded = {"params": params, "model_state": {k: v for k, v in model_state.items() if k not in fresh}}
  ours = {"params": state.params, "model_state": {k: v for k, v in state.model_state.items()
                                                   if k not in fresh}}
  flat = flatten_dict(loaded)
  key = lambda path: tuple(getattr(p, "key", str(p)) for p in path)  # noqa: E731
  have = {k: np.shape(v) for k, v in flat.items()}
  want = {key(path): tuple(v.shape) for path, v in jax.tree_util.tree_leaves_with_path(ours)}
  problems = sorted("/".join(k) + (f" {have[k]} vs {want[k]}" if k in have else " missing")
                    for k in want if have.get(k) != want[k])
  if problems:
    raise ValueError(f"train.init_from={source} (step {step}) does not fit this model: "
                     + ", ".join(problems[:8]) + (" ..." if len(problems) > 8 else ""))
  loaded = jax.tree_util.tree_map_with_path(lambda path, old: jnp.asarray(flat[key(path)], old.dtype),
                                            ours)  # Our tree structure, their values.
  loaded = jax.device_put(loaded, {"params": state_sharding.params, "model_state": {
      k: v for k, v in state_sharding.model_state.items() if k not in fresh}})
  return state.replace(params=loaded["params"], model_state={**loaded["model_state"], **keep})


def _global_norm_per_module(grads: Any) -> dict[str, jax.Array]:
  if isinstance(grads, dict):
    return {f"grad_norm/{k}": optax.global_norm(v) for k, v in grads.items()}
  return {"grad_norm": optax.global_norm(grads)}


def make_train_step(task: Task, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    base_rng: jax.Array):
  """(state, batch) -> (state, metrics). The step's rng is fold_in(base_rng, step): resumable."""

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(base_rng, state.step)
    grad_fn = jax.value_and_grad(task.loss, has_aux=True)
    (loss, (metrics, new_model_state)), grads = grad_fn(state.params, state.model_state, batch, rng,
                                                        state.step)
    norms = _global_norm_per_module(grads)
    finite = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.isfinite(n) for n in norms.values()]))
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
    state = TrainState(step=state.step + 1, params=keep(new_params, state.params),
                       opt_state=keep(new_opt_state, state.opt_state),
                       model_state=keep(new_model_state, state.model_state),
                       skipped_steps=state.skipped_steps + (~finite).astype(jnp.int32))
    metrics = dict(metrics, loss=loss, learning_rate=schedule(state.step - 1),
                   skipped_steps=state.skipped_steps, **norms)
    return state, metrics

  return train_step


def _eval_step(task: Task):
  def step(state: TrainState, batch: dict) -> dict:
    return task.eval_metrics({"params": state.params, **state.model_state}, batch)
  return step


def evaluate(task: Task, state: TrainState, eval_step, mesh, max_batches: int | None = None
             ) -> dict[str, float]:
  """Mean of every per-example metric over the held-out batches (valid examples only)."""
  batches = itertools.islice(task.eval_batches(jax.process_index(), jax.process_count()), max_batches)
  means, count = valid_weighted_means(
      jax.device_get(eval_step(state, sharding.global_batch(local, mesh))) for local in batches)
  return means | {"num_examples": count}


class _Preemption:
  """Turns SIGTERM into a flag so the loop can save and exit cleanly."""

  def __init__(self):
    self.requested = False
    try:
      self._old = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. notebooks running in threads)
      self._old = None

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint and stopping.")
    self.requested = True

  def restore(self):
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains config.task for config.train.num_steps steps in workdir, resuming if it has checkpoints."""
  validate_config(config)
  workdir = pathlib.Path(workdir)
  changed = checkpointing.check_resume(workdir, config)  # Before anything in workdir is written.
  if changed:
    logging.info("Resuming with changed settings: %s", ", ".join(changed))
  workdir.mkdir(parents=True, exist_ok=True)
  console.adopt_workdir(workdir)  # The log started in the temp folder while the workdir did not exist.
  if jax.process_index() == 0:
    checkpointing.save_config(workdir, config)
  task = get_task(config)
  tc = config.train
  mesh = sharding.make_mesh(tc.get("num_devices"))
  sharding.check_batch_size(config.data.batch_size, mesh)
  train_data = task.train_data(jax.process_index(), jax.process_count())
  total_steps = int(tc.num_steps) if tc.get("num_steps") else int(tc.num_epochs * task.steps_per_epoch())
  data_iter = iter(train_data)
  manager = checkpointing.make_manager(workdir, keep=tc.get("keep_checkpoints", 3),
                                       keep_period=tc.get("keep_period"),
                                       async_save=tc.get("async_checkpoints", True))
  # Peek at one batch for shapes, then rewind so training starts from the first batch.
  start_state = data_iter.get_state()
  first_batch = sharding.global_batch(next(data_iter), mesh)
  data_iter.set_state(start_state)

  tx, schedule = task.optimizer(total_steps)
  rng = jax.random.PRNGKey(config.seed)
  init_rng, step_rng = jax.random.split(rng)
  repl = sharding.replicated(mesh)
  abstract = jax.eval_shape(lambda r, b: create_train_state(task, tx, r, b), init_rng, first_batch)
  state_sharding = jax.tree.map(lambda _: repl, abstract)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract,
                          state_sharding)
  restored = checkpointing.restore(manager, abstract, data_iter)
  if restored is None:
    state = jax.jit(lambda r, b: create_train_state(task, tx, r, b), out_shardings=state_sharding)(
        init_rng, first_batch)
    if tc.get("init_from"):  # Fine-tuning: pre-trained variables, fresh optimizer state and step 0.
      state = warm_start(state, tc.init_from, state_sharding, tuple(tc.get("init_fresh", ())))
      logging.info("Initialised %s from the variables of %s", workdir, tc.init_from)
    else:
      logging.info("Initialised a new model in %s", workdir)
  else:
    step, state = restored
    logging.info("Resumed from step %d in %s", step, workdir)
  del first_batch

  batch_sharding = sharding.data_sharded(mesh)
  train_step = jax.jit(make_train_step(task, tx, schedule, step_rng), donate_argnums=(0,),
                       in_shardings=(state_sharding, batch_sharding), out_shardings=(state_sharding, repl))
  eval_step = jax.jit(_eval_step(task), out_shardings=repl)  # every process reads all metrics
  writer = summaries.Writer(workdir)
  step = int(jax.device_get(state.step))
  progress = summaries.Progress(total_steps, config.data.batch_size, step)
  bar = console.StepBar(total_steps, step, enabled=jax.process_index() == 0)
  preemption = _Preemption()
  # eval_every / image_every <= 0 switch those hooks off.
  log_every, eval_every = tc.get("log_every", 50), tc.get("eval_every", 1000)
  ckpt_every, image_every = tc.get("checkpoint_every", 1000), tc.get("image_every", eval_every)
  video_every = tc.get("video_every", 0)
  eval_batches = tc.get("eval_batches")
  pending: list[tuple[int, dict]] = []
  try:
    while step < total_steps:
      batch = sharding.global_batch(next(data_iter), mesh)
      state, metrics = train_step(state, batch)
      step += 1
      pending.append((step, metrics))
      loss = None
      if step % log_every == 0 or step == total_steps:
        # One host transfer per log interval, not per step.
        for s, m in jax.device_get(pending):
          last = m
        pending.clear()
        steps_per_s, samples_per_s = progress.rates(step)
        writer.scalars(step, dict(last, steps_per_second=steps_per_s, samples_per_second=samples_per_s))
        loss = float(last["loss"])
        logging.info("%s", progress.line(step, loss))
      bar.step(loss)
      if image_every > 0 and (step % image_every == 0 or step == total_steps):
        eval_local = next(task.eval_batches(jax.process_index(), jax.process_count()), None)
        if eval_local is not None:
          images = task.summaries({"params": state.params, **state.model_state},
                                  sharding.global_batch(eval_local, mesh))
          writer.images(step, jax.device_get(images))
      if video_every > 0 and step % video_every == 0 and jax.process_index() == 0:
        path = task.write_samples({"params": state.params, **state.model_state}, step, str(workdir))
        if path:
          logging.info("wrote samples %s", path)
      if eval_every > 0 and (step % eval_every == 0 or step == total_steps):
        results = evaluate(task, state, eval_step, mesh, eval_batches)
        writer.scalars(step, {f"eval/{k}": v for k, v in results.items()})
        logging.info("eval at step %d: %s", step, results)
        bar.write(f"eval at step {step}: {console.format_metrics(results)}")
      if step % ckpt_every == 0 or step == total_steps or preemption.requested:
        checkpointing.save(manager, step, state, data_iter, force=preemption.requested)
      if preemption.requested:
        break
    manager.wait_until_finished()
    bar.close()
    outputs = None
    if step >= total_steps and tc.get("final_outputs", True):
      outputs = task.after_training({"params": state.params, **state.model_state}, str(workdir))
      if outputs:
        logging.info("after training: %s", outputs)
    if jax.process_index() == 0:
      print(console.training_summary(workdir, step, outputs, console.active_log_file()), flush=True)
  finally:
    bar.close()
    preemption.restore()
    writer.close()
    manager.close()
  return state
