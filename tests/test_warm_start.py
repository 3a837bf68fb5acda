"""train.init_from: params and model state from another workdir, fresh collections kept, mismatches named."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem import checkpointing, train


def _source(workdir, params, model_state):
  workdir.mkdir()
  import ml_collections
  checkpointing.save_config(workdir, ml_collections.ConfigDict({"task": "x"}))
  manager = checkpointing.make_manager(workdir, async_save=False)
  checkpointing.save(manager, 7, {"step": np.int32(7), "params": params, "opt_state": {},
                                  "model_state": model_state, "skipped_steps": np.int32(0)}, None)
  manager.wait_until_finished()
  manager.close()


def _state(params, model_state):
  return train.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=(),
                          model_state=model_state, skipped_steps=jnp.zeros((), jnp.int32))


def test_warm_start(tmp_path):
  src = tmp_path / "pretrained"
  _source(src, {"dense": {"kernel": np.full((2, 3), 1.5, np.float32)}},
          {"batch_stats": {"mean": np.full((3,), 2.0, np.float32)},
           "explicit_memory": {"keys": np.ones((4, 5), np.float32)}})  # 4 speakers
  ours = _state({"dense": {"kernel": jnp.zeros((2, 3))}},
                {"batch_stats": {"mean": jnp.zeros((3,))},
                 "explicit_memory": {"keys": jnp.full((1, 5), 9.0)}})  # the new speaker's
  sharding = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), ours)
  out = train.warm_start(ours, str(src), sharding, fresh=("explicit_memory",))
  np.testing.assert_array_equal(out.params["dense"]["kernel"], np.full((2, 3), 1.5))
  np.testing.assert_array_equal(out.model_state["batch_stats"]["mean"], np.full((3,), 2.0))
  np.testing.assert_array_equal(out.model_state["explicit_memory"]["keys"], np.full((1, 5), 9.0))
  assert int(out.step) == 0
  with pytest.raises(ValueError, match=r"explicit_memory/keys \(4, 5\) vs \(1, 5\)"):
    train.warm_start(ours, str(src), sharding)
