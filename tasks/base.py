"""The one interface between a network's logits and the train loop.

A task owns its model family, its loss, its predictions and its data, so one
train loop (train.py) serves every family (the t5x split). Subclasses name
their network (`model_name`, a key of models/registry.py) and fill in the
abstract methods; model building and initialisation are shared here.

Besides its methods, a task class answers, without being built, what other
modules would otherwise look up by config.task: `checkpoint_family` (which
runs' weights may seed it through config.init_from), `flops_family`
with `step_shape(config)` (training/flops.py's formula and lengths) and
`predict_mode` (predict.py's reading of input lines); a built task adds
its export facts (`export_architecture`, `export_token_ids`).
"""
import abc

import jax.numpy as jnp

from errors import UserError
from input_data.task_data import TaskData, reads_builtin_data
from models import hf, registry
from models.config import model_config_from
import tasks  # the registry, for the family of a saved run
from training import pretrained, run_config
from training import flops
from training.flops import StepShape


class Task(abc.ABC):
  """What train.py calls. Every method but the data ones is pure (jittable).

  loss_sums returns sums, never means: 'loss', 'weight' (its token or
  example count), 'correct' (hits, where `likelihood_loss`), and any extra
  sums. train.py divides them by
  'weight' after summing over devices, except 'X_correct' with an
  'X_examples' count, which becomes 'X_accuracy'.
  """
  model_name: str  # models/registry.py name of the network
  # init_from moves weights only between runs of one family ('BERT', ...).
  checkpoint_family: str
  # The training/flops.py formula that counts this network's matmuls.
  flops_family: str
  # predict.py's mode (a key of training/prediction.MODES): how an input
  # line becomes model inputs and a prediction an output line; None where
  # the task predicts nothing a line could ask for.
  predict_mode: str | None

  def __init__(self, config):
    self.config = config
    self.model_config = model_config_from(config.model)
    self.data: TaskData = self.make_data()  # checks config.data.source
    # Built-in rows or files, chosen once: lengths, scores and tokenizers
    # follow it.
    self.builtin_data = reads_builtin_data(config)

  @classmethod
  def step_shape(cls, config) -> StepShape:
    """The padded example a run of `config` trains on, for its FLOPs and
    tokens per step: by default one row of config.data.max_length."""
    return StepShape(seq_len=config.data.max_length)

  @classmethod
  def train_flops(cls, model_cfg, config, batch_size: int) -> float:
    """Model FLOPs of one training step of `batch_size` rows of `config`
    (training/flops.py's count for this task's family and step shape)."""
    return flops.train_flops(model_cfg, cls.flops_family,
                             cls.step_shape(config), batch_size)

  # Model -------------------------------------------------------------------
  def build_model(self, train: bool, decode: bool = False):
    return registry.build(self.model_name, self.model_config,
                          deterministic=not train, decode=decode)

  def init_variables(self, rng):
    """Fresh variables, plain arrays (pure: train.py jits it)."""
    return registry.init_variables(self.model_name, self.model_config, rng)

  def param_axes(self):
    """The parameters' logical axis names (PartitionSpecs), for sharding."""
    return registry.param_axes(self.model_name, self.model_config)

  def apply(self, params, *args, rng=None, train: bool = False, **kwargs):
    """The network's forward pass (dropout from `rng` when training)."""
    return self.build_model(train).apply(
        {'params': params}, *args, rngs={'dropout': rng} if train else {},
        **kwargs)

  def check_init_from(self, workdir: str):
    """One line if config.init_from cannot seed this run: a run of another
    network family, or one that read its text with another tokenizer.
    Cheap, and before anything is written to `workdir`."""
    path = self.config.init_from
    pretrained.check_init_from(path)
    if pretrained.is_workdir(path):
      saved = run_config.load_flat(path) or {}
      self.check_same_family(path, saved.get('task'))
      self.data.check_same_tokenizer(path, saved, workdir)

  def check_same_family(self, path: str, saved_task: str | None):
    """One line if the run in workdir `path` trained task `saved_task` of
    another `checkpoint_family`: weights move only within one."""
    theirs = tasks.checkpoint_family(saved_task)
    if theirs and theirs != self.checkpoint_family:
      raise UserError(
          f'config.init_from={path} holds a run of task {saved_task!r} '
          f'({theirs}), but this run trains task {self.config.task!r} '
          f'({self.checkpoint_family}): weights move only within one family')

  def row_lengths(self) -> dict[str, int]:
    """The longest rows the config feeds the network, by the config field
    that sets each and its value: {'config.data.max_length=128': 128}."""
    length = self.config.data.max_length
    return {f'config.data.max_length={length}': length}

  def check_positions(self):
    """Fails in one line if rows are longer than the position table: a
    position past it reads NaN (jnp.take fills out-of-range rows), which
    would surface only as a 'diverged' run at step 1."""
    cfg = self.model_config
    if cfg.position_embedding not in ('learned', 'sinusoidal'):
      return  # rotary, relative and no positions have no table
    for field, length in self.row_lengths().items():
      if length > cfg.max_len:
        raise UserError(
            f'{field} gives rows of {length} positions but '
            f'config.model.max_len={cfg.max_len} ({cfg.position_embedding} '
            f'positions) holds only {cfg.max_len}: raise config.model.max_len'
            ' or shorten the rows')

  # Export (export.py) -------------------------------------------------------
  def export_architecture(self) -> str:
    """The transformers class an export of this run is (models/hf/'s
    converter for the network); ExportError, one line, where none fits."""
    return hf.architecture(self.model_config, self.model_name)

  def export_token_ids(self, tokenizer) -> dict:
    """The special ids config.json names (built-in data: its own ids)."""
    return dict(pad_token_id=tokenizer.pad_id)

  # Loss and predictions ----------------------------------------------------
  @abc.abstractmethod
  def loss_sums(self, params, batch, rng, train: bool) -> dict:
    """Sums over the batch's weighted tokens or examples (see class doc)."""

  @abc.abstractmethod
  def predict(self, params, batch):
    """Per-example outputs (e.g. beam search), pure."""

  @abc.abstractmethod
  def score(self, predictions, batches) -> dict:
    """Host-side sums of decoded-output metrics over this host's real
    examples; train.py sums them over hosts, then `metrics_from_sums`."""

  def metrics_from_sums(self, sums: dict) -> dict:
    """Metrics from host-summed `score` output: by default each value is a
    (total, count) pair and the metric is their ratio."""
    return {name: float(total) / max(float(count), 1.0)
            for name, (total, count) in sums.items()}

  @classmethod
  def likelihood_loss(cls, config) -> bool:
    """Whether the loss is a cross-entropy over tokens or classes, so that
    accuracy and perplexity mean something (not a squared error)."""
    del config
    return True

  @classmethod
  def loss_metric_names(cls, config) -> tuple[str, ...]:
    """Names of the extra `loss_sums` metrics (without 'eval/')."""
    del config
    return ()

  @classmethod
  def decoded_metric_names(cls, config) -> tuple[str, ...]:
    """Names `metrics_from_sums` reports for `config` (without 'eval/'),
    known without loading data: sweeps check their objective with it."""
    del config
    return ()

  # Data --------------------------------------------------------------------
  @abc.abstractmethod
  def make_data(self) -> TaskData:
    """The task's TaskData (synthetic rows and file pipeline)."""

  def train_batches(self, workdir: str, global_batch_size: int):
    """Infinite iterator of this host's rows, with get_state()/set_state()
    (saved in checkpoints)."""
    return self.data.train_batches(workdir, global_batch_size)

  def eval_batches(self, global_batch_size: int):
    """Re-iterable host batches, each with 'example_weight' (0: filler)."""
    return self.data.eval_batches(global_batch_size)


class BertTask(Task):
  """Tasks on a BERT encoder: the three id inputs of every batch."""
  INPUTS = ('input_ids', 'token_type_ids', 'attention_mask')
  checkpoint_family = 'BERT'  # the encoder moves between its heads

  def forward(self, params, batch, rng=None, train=False, **kwargs):
    return self.apply(params, *(batch[k] for k in self.INPUTS), rng=rng,
                      train=train, **kwargs)


def example_weights(batch, shape):
  """Eval batches weight filler rows 0; training batches have none."""
  if 'example_weight' in batch:
    return batch['example_weight']
  return jnp.ones(shape, jnp.float32)
