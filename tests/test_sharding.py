"""Mesh parallelism: data, fsdp and tensor axes from logical axis rules.

Tiny models on the 8 simulated devices of conftest.py: a mesh of
data=2, fsdp=2, tensor=2 trains as data=8 and as pmap do, splits each
weight as the rules say, and its checkpoints restore under other meshes.
"""
import functools
import re

import jax
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

import train
from configs import base_config, causal_lm, default
from models import logical_axes
from tasks import get_task
from training import checkpointing, optimizers, run_config, sharding

MESHES = {'pmap': None, 'data8': dict(data=-1, fsdp=1, tensor=1),
          '2x2x2': dict(data=2, fsdp=2, tensor=2)}


def tiny(family: str, mesh: str):
  config = (default.get_config() if family == 'encoder_decoder'
            else causal_lm.get_config())
  config.model.update(d_model=32, d_ff=64, num_heads=4, num_layers=1,
                      dropout_rate=0.0)
  config.batch_size = 16
  config.data.max_length = 16
  # Adam's eps of 1e-9 turns float noise in near-zero gradients into
  # full-size updates; a larger one compares the parameters themselves.
  config.optimizer.update(schedule='constant', learning_rate=3e-3,
                          warmup_steps=1, eps=1e-6)
  config.parallelism = 'pmap' if MESHES[mesh] is None else 'mesh'
  if MESHES[mesh]:
    config.mesh.update(MESHES[mesh])
  return config


def run_steps(config, steps: int = 3):
  """(losses, final state on the devices, Parallel) of `steps` updates."""
  base_config.validate(config, jax.device_count())
  task = get_task(config)
  dp = train.make_parallel(config, task)
  optimizer, _ = optimizers.make_optimizer(config.optimizer, 100)
  state = dp.place_state(train.initial_state(task, optimizer, config, dp))
  step = dp.compile(functools.partial(
      train.train_step, task=task, optimizer=optimizer,
      axis_name=dp.axis_name, grad_accum_steps=1),
      num_sharded=1, donate_state=True, returns_state=True)
  batches = task.train_batches(None, config.batch_size)
  losses = []
  for _ in range(steps):
    state, sums = step(state, dp.shard(next(batches)), jax.random.key(1))
    sums = dp.reduced(sums)
    losses.append(float(sums['loss']) / float(sums['weight']))
  return np.array(losses), state, dp


def host_params(state, dp):
  return jax.tree.map(np.asarray, dp.global_state(state).params)


@pytest.fixture(scope='module', params=['encoder_decoder', 'decoder_lm'])
def runs(request):
  """{mesh: run_steps} of one model family, and the family."""
  return {mesh: run_steps(tiny(request.param, mesh)) for mesh in MESHES}, \
      request.param


def test_data_fsdp_tensor_mesh_trains_as_data_parallel_and_pmap(runs):
  runs, _ = runs
  losses = {mesh: out[0] for mesh, out in runs.items()}
  assert np.all(np.isfinite(losses['data8']))
  for mesh in ('pmap', '2x2x2'):
    np.testing.assert_allclose(losses[mesh], losses['data8'], rtol=2e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=2e-5),
        host_params(*runs[mesh][1:]), host_params(*runs['data8'][1:]))


def test_weights_and_batches_are_split_as_the_rules_say(runs):
  _, state, dp = runs[0]['2x2x2']
  stack = state.params.get('encoder', state.params)['stack']['layers_0']
  kernel = stack['ffn']['wi']['kernel']  # [embed 32, mlp 64]
  assert kernel.sharding.spec == P('fsdp', 'tensor')
  assert {s.data.shape for s in kernel.addressable_shards} == {(16, 32)}
  assert stack['attention']['query']['kernel'].sharding.spec == P(
      'fsdp', 'tensor', None)  # [embed, heads, kv]
  table = state.params['token_embedding']['embedding']  # [vocab, embed]
  assert table.sharding.spec == P('tensor', 'fsdp')
  # Adam's moments are laid out as their parameters; its count replicated.
  adam = state.opt_state[0]
  mu = adam.mu.get('encoder', adam.mu)['stack']['layers_0']['ffn']['wi']
  assert mu['kernel'].sharding == kernel.sharding
  assert adam.count.sharding.is_fully_replicated
  batch = dp.shard({'x': np.zeros((16, 4), np.int32)})['x']
  assert batch.sharding.spec == P(('data', 'fsdp'))
  assert {s.data.shape for s in batch.addressable_shards} == {(4, 4)}


@pytest.mark.parametrize('target', [dict(data=-1, fsdp=1, tensor=1),
                                    dict(data=1, fsdp=4, tensor=2)])
def test_checkpoint_of_one_mesh_restores_under_another(runs, tmp_path,
                                                       target):
  (_, state, dp), family = runs[0]['2x2x2'], runs[1]
  saved = jax.tree.map(np.asarray, dp.global_state(state))
  checkpointer = checkpointing.Checkpointer(str(tmp_path), keep=1)
  checkpointer.save(3, dp.global_state(state), {'position': 7})
  checkpointer.wait()
  config = tiny(family, '2x2x2')
  config.mesh.update(target)
  other = train.make_parallel(config, get_task(config))
  restored, data_state = checkpointer.restore(3, other.abstract_state(saved))
  checkpointer.close()
  assert data_state == {'position': 7}
  jax.tree.map(np.testing.assert_array_equal, restored, saved)
  jax.tree.map(lambda r, s: (r.sharding == s) or pytest.fail(str(r.sharding)),
               restored, other.state_shardings(saved))


def test_an_axis_that_does_not_divide_a_dimension_leaves_it_whole():
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(2, 2, 2),
                           ('data', 'fsdp', 'tensor'))
  rules = base_config.base_config().logical_axis_rules
  spec = lambda names, shape: sharding.mesh_spec(P(*names), shape, mesh,
                                                 rules)
  assert spec(('embed', 'mlp'), (32, 64)) == P('fsdp', 'tensor')
  assert spec(('embed', 'kv_heads', 'kv'), (32, 1, 8)) == P('fsdp', None,
                                                            None)
  assert spec(('vocab', 'embed'), (51, 32)) == P(None, 'fsdp')
  assert spec(('batch', 'length'), (6, 5)) == P('data', None)
  assert spec(('layers', 'embed'), (3, 32)) == P(None, 'fsdp')


def test_optimizer_state_is_laid_out_like_its_parameters():
  config = tiny('decoder_lm', '2x2x2')
  # Masked weight decay and clipping: states that optax.tree_map_params
  # cannot map, matched here by parameter path.
  config.optimizer.update(name='adamw', weight_decay=0.1,
                          decay_only_matrices=True, grad_clip_norm=1.0)
  task = get_task(config)
  optimizer, _ = optimizers.make_optimizer(config.optimizer, 10)
  params = jax.eval_shape(task.init_variables, jax.random.key(0))['params']
  axes = sharding.logical_axes_of(
      dict(params=params, opt=jax.eval_shape(optimizer.init, params)),
      task.param_axes())
  flat = {jax.tree_util.keystr(k): v for k, v in
          jax.tree_util.tree_flatten_with_path(
              axes, is_leaf=lambda x: isinstance(x, P))[0]}
  wi = "['stack']['layers_0']['ffn']['wi']['kernel']"
  assert flat["['params']" + wi] == P('embed', 'mlp')
  moments = [v for k, v in flat.items() if k.startswith("['opt']")
             and k.endswith(wi)]
  assert moments == [P('embed', 'mlp')] * 2  # mu and nu
  counts = [v for k, v in flat.items() if k.endswith('.count')]
  assert counts and all(v == P() for v in counts)


def config_with(**fields):
  config = tiny('encoder_decoder', '2x2x2')
  with config.unlocked():
    for name, value in fields.items():
      config[name] = value
  return config


@pytest.mark.parametrize('fields, message', [
    (dict(mesh=dict(data=3, fsdp=1, tensor=1)),
     'config.mesh (data=3, fsdp=1, tensor=1): its sizes multiply to 3, which '
     'does not divide the 8 devices'),
    (dict(mesh=dict(data=2, fsdp=2, tensor=1)),
     'config.mesh (data=2, fsdp=2, tensor=1) uses 4 of the 8 devices; set '
     'one axis to -1 to use all'),
    (dict(mesh=dict(data=-1, model=2)),
     "config.mesh (data=-1, model=2) has unknown axis 'model'; the axes are "
     'data, fsdp, tensor'),
    (dict(mesh=dict(data=-1, fsdp=-1, tensor=1)),
     'config.mesh (data=-1, fsdp=-1, tensor=1) may have one axis of -1'),
    (dict(logical_axis_rules=(('batch', 'data'), ('hidden', 'tensor'))),
     "config.logical_axis_rules names unknown logical axis 'hidden'"),
    (dict(logical_axis_rules=(('mlp', 'model'),)),
     "config.logical_axis_rules maps 'mlp' to unknown mesh axis 'model'"),
    (dict(parallelism='pmap'),
     "splits over fsdp or tensor, which needs config.parallelism='mesh'"),
])
def test_a_bad_mesh_is_one_clear_line(fields, message):
  config = config_with(**fields)
  with pytest.raises(ValueError, match=re.escape(message)) as error:
    base_config.validate(config, 8)
  assert str(error.value).startswith('config.')
  assert '\n' not in str(error.value)


def test_a_resumed_run_may_change_its_mesh():
  before = run_config.flatten(tiny('encoder_decoder', 'data8'))
  after = run_config.flatten(tiny('encoder_decoder', '2x2x2'))
  assert run_config.differences(before, after) == []
  after['model.d_model'] = 64
  assert run_config.differences(before, after) == ['model.d_model']


def test_without_rules_variables_are_arrays_and_constraints_no_ops():
  task = get_task(tiny('encoder_decoder', 'data8'))
  shapes = jax.eval_shape(task.init_variables, jax.random.key(0))
  assert all(isinstance(x, jax.ShapeDtypeStruct)
             for x in jax.tree.leaves(shapes))
  x = np.ones((2, 3), np.float32)
  assert logical_axes.constrain(x, 'batch', 'embed') is x
