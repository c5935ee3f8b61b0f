"""Mesh parallelism: data, fsdp and tensor axes from logical axis rules.

Tiny encoder-decoder, decoder LM and BERT on the 8 simulated devices of
conftest.py: meshes (data, fsdp, tensor) of (8,1,1), (2,4,1), (2,2,2) and
(1,1,8) train as one device does, hold 1/(fsdp x tensor) of the state per
device, split each weight as the rules say, and their checkpoints restore
under other meshes.
"""
import functools
import re

import jax
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from configs import base_config, bert_pretraining, causal_lm, default
from models import logical_axes
from tasks import get_task
from training import checkpointing, loop, optimizers, parallel, run_config
from training import sharding
from training import steps as steps_lib

# Meshes over (data, fsdp, tensor), each against one device.
MESHES = {'one': dict(data=-1, fsdp=1, tensor=1),
          '8x1x1': dict(data=8, fsdp=1, tensor=1),
          '2x4x1': dict(data=2, fsdp=4, tensor=1),
          '2x2x2': dict(data=2, fsdp=2, tensor=2),
          '1x1x8': dict(data=1, fsdp=1, tensor=8),
          'pmap': None}
FAMILIES = {'encoder_decoder': default.get_config,
            'decoder_lm': causal_lm.get_config,
            'bert': bert_pretraining.get_config}
# pmap (pure data parallelism) for the decoder LM only: test_train compares
# it with one device for the encoder-decoder, and each mesh costs a compile.
PMAP_FAMILIES = ('decoder_lm',)


def tiny(family: str, mesh: str):
  config = FAMILIES[family]()
  # 8 heads so that tensor=8 splits them too; wide enough that norms,
  # biases and positions (which tensor parallelism leaves whole) are a few
  # percent of the bytes, as in real models (test_parameters_and_...).
  config.model.update(d_model=128, d_ff=512, num_heads=8, num_layers=1,
                      max_len=16, dropout_rate=0.0,
                      attention_dropout_rate=0.0)
  config.batch_size = 16
  config.data.max_length = 16
  # Adam's eps of 1e-9 turns float noise in near-zero gradients into
  # full-size updates; a larger one compares the parameters themselves.
  config.optimizer.update(schedule='constant', learning_rate=3e-3,
                          warmup_steps=1, eps=1e-6)
  config.parallelism = 'pmap' if MESHES[mesh] is None else 'mesh'
  if MESHES[mesh]:
    config.mesh.update(MESHES[mesh])
  config.num_devices = 1 if mesh == 'one' else 0
  return config


def run_steps(config, initial=None, steps: int = 3):
  """(metrics per step, final state on the devices, Parallel) of `steps`
  updates from `initial` (a host state; None: initialised on the devices,
  each computing its shards); metrics: {'loss': mean loss per step,
  'grad_norm': global gradient norm per step}."""
  base_config.validate(config, config.num_devices or jax.device_count())
  task = get_task(config)
  dp = parallel.for_config(config, task)
  optimizer, _ = optimizers.make_optimizer(config.optimizer, 100)
  if initial is None:
    initial = loop.initial_state(task, optimizer, config, dp)
  state = dp.place_state(initial)
  step = dp.compile(functools.partial(
      steps_lib.train_step, task=task, optimizer=optimizer,
      axis_name=dp.axis_name, grad_accum_steps=1),
      num_sharded=1, donate_state=True, returns_state=True)
  batches = task.train_batches(None, config.batch_size)
  metrics = {'loss': [], 'grad_norm': []}
  for _ in range(steps):
    state, sums = step(state, dp.shard(next(batches)), jax.random.key(1))
    sums = dp.reduced(sums)
    metrics['loss'].append(float(sums['loss']) / float(sums['weight']))
    metrics['grad_norm'].append(float(sums['grad_norm']))
  return {k: np.array(v) for k, v in metrics.items()}, state, dp


def host_state(state, dp):
  return jax.tree.map(np.asarray, dp.global_state(state))


def initial_host_state(config):
  """The initial state of `config` computed on one device, on the host."""
  task = get_task(config)
  dp = parallel.for_config(config, task)
  optimizer, _ = optimizers.make_optimizer(config.optimizer, 100)
  return host_state(loop.initial_state(task, optimizer, config, dp), dp)


@pytest.fixture(scope='module', params=list(FAMILIES))
def runs(request):
  """{mesh: run_steps} of one model family, and the family. Compiles
  dominate (seconds a mesh), so each family runs once per module; all
  meshes start from the one device's initial state, but for 2x2x2 whose
  state is initialised split (each device computing its shards)."""
  family = request.param
  initial = initial_host_state(tiny(family, 'one'))
  return {mesh: run_steps(tiny(family, mesh),
                          None if mesh == '2x2x2' else initial)
          for mesh in MESHES
          if mesh != 'pmap' or family in PMAP_FAMILIES}, family


def moment_error(tree, reference) -> float:
  """Largest leafwise max|a - b| / (max|b| + 1e-3 * the tree's max|b|):
  Adam's moments span decades, so each leaf is judged at its own scale,
  but a leaf whose gradient is 0 in exact arithmetic (the key bias: softmax
  ignores it) holds only float noise and is judged at the tree's."""
  top = max(np.abs(x).max() for x in jax.tree.leaves(reference))
  errors = jax.tree.map(
      lambda a, b: np.abs(a - b).max() / (np.abs(b).max() + 1e-3 * top),
      tree, reference)
  return max(jax.tree.leaves(errors))


def test_every_mesh_trains_as_one_device(runs):
  """Losses and gradient norms of 3 updates, and the state after them:
  the parameters, and Adam's moments, running sums of the gradients and
  their squares, which compare the gradients themselves (Adam's first
  updates are close to lr * sign(gradient) and would hide a wrong scale).
  Measured on 8 simulated CPU devices: losses within 4e-7, gradient norms
  1.3e-7 (relative), parameters 1.1e-5 (absolute; Adam's eps of 1e-6 turns
  the float noise of near-zero gradients into updates), moments 4.2e-6."""
  runs, family = runs
  metrics, state, dp = runs['one']
  reference = host_state(state, dp)
  assert np.all(np.isfinite(metrics['loss']))
  assert metrics['loss'][-1] != metrics['loss'][0]
  for mesh in runs.keys() - {'one'}:
    got, state, dp = runs[mesh]
    where = f'{family} on {mesh}'
    np.testing.assert_allclose(got['loss'], metrics['loss'], rtol=1e-5,
                               err_msg=where)
    np.testing.assert_allclose(got['grad_norm'], metrics['grad_norm'],
                               rtol=1e-5, err_msg=where)
    other = host_state(state, dp)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(
        a, b, rtol=0, atol=5e-5, err_msg=where), other.params,
                 reference.params)
    adam, reference_adam = other.opt_state[0], reference.opt_state[0]
    for moment in ('mu', 'nu'):
      error = moment_error(getattr(adam, moment),
                           getattr(reference_adam, moment))
      assert error < 5e-5, f'{where}: Adam {moment} off by {error:.1e}'


def device_bytes(tree, device) -> int:
  """Bytes that `device` holds of the arrays of `tree` (their shards)."""
  return sum(shard.data.nbytes for x in jax.tree.leaves(tree)
             for shard in x.addressable_shards if shard.device == device)


def tensor_whole_bytes(tree, task, rules) -> int:
  """Bytes of the arrays of `tree` with no dimension whose logical name the
  rules give to 'tensor' (norms, biases and positions over 'embed' only,
  BERT's d_model x d_model pooler and MLM transform): tensor parallelism
  leaves them whole, fsdp alone splits them."""
  to_tensor = {name for name, axes in rules
               if 'tensor' in (axes if isinstance(axes, tuple) else (axes,))}
  specs = jax.tree.leaves(sharding.logical_axes_of(tree, task.param_axes()),
                          is_leaf=lambda x: isinstance(x, P))
  return sum(np.asarray(x).nbytes for x, spec in zip(jax.tree.leaves(tree),
                                                     specs)
             if not to_tensor & set(spec))


@pytest.mark.parametrize('mesh', ['8x1x1', '2x4x1', '2x2x2', '1x1x8'])
def test_parameters_and_optimizer_state_per_device_shrink_by_fsdp_x_tensor(
    runs, mesh):
  """One device's bytes of parameters + Adam's state against the whole
  state's: divided by fsdp x tensor, but for the arrays that tensor
  parallelism leaves whole (W, divided by fsdp only: 0.4% of the bytes in
  the encoder-decoder, 1.5% in the decoder LM, 15% in this 1-layer BERT,
  whose d_model x d_model pooler and MLM transform are a third of a
  layer); 3% more for the arrays without an 'embed' dimension that fsdp
  leaves whole (biases over heads or mlp). Measured: held / bound at most
  1.015; held x fsdp x tensor / whole at most 1.03 (encoder-decoder),
  1.10 (decoder LM, 1x1x8) and 2.06 (BERT, 1x1x8)."""
  runs, family = runs
  (_, one, one_dp), (_, state, _) = runs['one'], runs[mesh]
  whole = host_state(one, one_dp)
  whole = (whole.params, whole.opt_state)
  total = sum(np.asarray(x).nbytes for x in jax.tree.leaves(whole))
  assert device_bytes((one.params, one.opt_state), jax.devices()[0]) == total
  fsdp, tensor = MESHES[mesh]['fsdp'], MESHES[mesh]['tensor']
  config = tiny(family, mesh)
  tensor_whole = tensor_whole_bytes(
      whole, get_task(config), sharding.axis_rules(config.logical_axis_rules))
  held = device_bytes((state.params, state.opt_state), jax.devices()[0])
  assert held >= total / (fsdp * tensor)
  bound = (total - tensor_whole) / (fsdp * tensor) + tensor_whole / fsdp
  assert held <= 1.03 * bound, (held, bound, total)


def test_weights_and_batches_are_split_as_the_rules_say(runs):
  (_, state, dp), family = runs[0]['2x2x2'], runs[1]
  model = {'encoder_decoder': 'encoder', 'bert': 'bert'}.get(family)
  params = state.params[model] if model else state.params
  stack = params['stack']['layers_0']
  kernel = stack['ffn']['wi']['kernel']  # [embed 128, mlp 512]
  assert kernel.sharding.spec == P('fsdp', 'tensor')
  assert {s.data.shape for s in kernel.addressable_shards} == {(64, 256)}
  assert stack['attention']['query']['kernel'].sharding.spec == P(
      'fsdp', 'tensor', None)  # [embed, heads, kv]
  table = (params if family == 'bert' else state.params)['token_embedding'][
      'embedding']  # [vocab, embed]
  assert table.sharding.spec == P('tensor', 'fsdp')
  # Adam's moments are laid out as their parameters; its count replicated.
  adam = state.opt_state[0]
  mu = (adam.mu[model] if model else adam.mu)['stack']['layers_0']['ffn'][
      'wi']
  assert mu['kernel'].sharding == kernel.sharding
  assert adam.count.sharding.is_fully_replicated
  batch = dp.shard({'x': np.zeros((16, 4), np.int32)})['x']
  assert batch.sharding.spec == P(('data', 'fsdp'))
  assert {s.data.shape for s in batch.addressable_shards} == {(4, 4)}


@pytest.mark.parametrize('target', [dict(data=8, fsdp=1, tensor=1),
                                    dict(data=1, fsdp=4, tensor=2)])
def test_checkpoint_of_one_mesh_restores_under_another(runs, tmp_path,
                                                       target):
  """Saved under (2, 4, 1): restored as is under (8, 1, 1) and (1, 4, 2)."""
  (_, state, dp), family = runs[0]['2x4x1'], runs[1]
  saved = jax.tree.map(np.asarray, dp.global_state(state))
  checkpointer = checkpointing.Checkpointer(str(tmp_path), keep=1)
  checkpointer.save(3, dp.global_state(state), {'position': 7})
  checkpointer.wait()
  config = tiny(family, '2x4x1')
  config.mesh.update(target)
  other = parallel.for_config(config, get_task(config))
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
  before = run_config.flatten(tiny('encoder_decoder', '8x1x1'))
  after = run_config.flatten(tiny('encoder_decoder', '2x2x2'))
  assert run_config.differences(before, after) == []
  after['model.d_model'] = 64
  assert run_config.differences(before, after) == ['model.d_model']


def test_without_rules_variables_are_arrays_and_constraints_no_ops():
  task = get_task(tiny('encoder_decoder', '8x1x1'))
  shapes = jax.eval_shape(task.init_variables, jax.random.key(0))
  assert all(isinstance(x, jax.ShapeDtypeStruct)
             for x in jax.tree.leaves(shapes))
  x = np.ones((2, 3), np.float32)
  assert logical_axes.constrain(x, 'batch', 'embed') is x
