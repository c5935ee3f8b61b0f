"""Fields every experiment shares, with their defaults; one comment each.

Experiment files call `base_config()` and override what they change, so a
reader sees every knob in one place and `--config.x=y` type-checks.
`validate(config)` checks every value at once; train.py calls it before it
creates or writes anything, so a typo never leaves a half-made workdir.
Data, fsdp and tensor parallelism are `mesh` and `logical_axis_rules` with
parallelism='mesh', e.g. --config.mesh.fsdp=2 --config.mesh.tensor=2.
"""
import dataclasses
import math

import jax
import ml_collections

from errors import UserError
from models.config import ModelConfig, model_config_from
from models.logical_axes import LOGICAL_AXES

MESH_AXES = ('data', 'fsdp', 'tensor')


def model_config(**overrides) -> ml_collections.ConfigDict:
  """All ModelConfig fields (so every one can be overridden by flag)."""
  fields = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
  unknown = set(overrides) - set(fields)
  if unknown:
    raise UserError(f'unknown model field(s): {", ".join(sorted(unknown))}')
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def parse_options(arg: str | None, **defaults) -> dict:
  """get_config's 'key=value,key=value' argument -> dict over `defaults`,
  naming unknown keys."""
  options = dict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, _, value = item.partition('=')
    if key not in options:
      raise UserError(f'unknown option {key!r} in {arg!r}; expected '
                       f'{", ".join(options)}')
    options[key] = value
  return options


def base_config() -> ml_collections.ConfigDict:
  """Every field any experiment or module reads, locked: an experiment may
  change values but not add fields, so a typo fails where it is made."""
  config = ml_collections.ConfigDict()
  config.task = 'seq2seq'          # tasks/ registry name
  config.seed = 0                  # parameters, dropout and data order
  config.model = model_config()
  config.data = data_config()
  config.tokenizer = tokenizer_config()

  config.batch_size = 64           # global batch (examples), all devices
  config.eval_batch_size = 64      # global batch for evaluation/decoding
  config.num_train_steps = 1000
  config.grad_accum_steps = 1      # microbatches per step (same update)
  config.label_smoothing = 0.1     # epsilon_ls of the paper
  # 0: materialise the [b, t, vocab] logits; n: fuse the output layer with
  # the loss over chunks of n positions (never holds the logits; faster on
  # CPU where memory-bound; seq2seq and causal_lm; training/losses.py).
  config.loss_chunk_length = 0
  config.parallelism = 'pmap'      # 'pmap' or 'mesh' (jit over a Mesh)
  config.num_devices = 0           # 0: all devices; n: the first n (1 host)
  # parallelism='mesh': devices per mesh axis, -1 for those the others leave
  # (training/sharding.py). data splits the batch; fsdp splits the batch and
  # the weights (ZeRO-3); tensor splits layers (Megatron). E.g.
  # --config.mesh.fsdp=2 --config.mesh.tensor=2 on 8 devices: data=2.
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  # parallelism='mesh': (logical axis of models/logical_axes.py, mesh axis,
  # tuple of axes or None), tried in order; a mesh axis splits at most one
  # dimension of an array, so activations' 'embed' stays whole (fsdp
  # already splits 'batch'). As MaxText's defaults.
  config.logical_axis_rules = (
      ('batch', ('data', 'fsdp')), ('embed', 'fsdp'), ('mlp', 'tensor'),
      ('heads', 'tensor'), ('kv_heads', 'tensor'), ('vocab', 'tensor'),
      ('kv', None), ('length', None), ('layers', None))

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adam'   # 'adam' (paper) or 'adamw'
  config.optimizer.schedule = 'rsqrt'  # 'rsqrt' (paper), 'cosine', 'constant'
  config.optimizer.learning_rate = 7e-4  # peak, reached after warmup
  config.optimizer.warmup_steps = 4000
  config.optimizer.end_learning_rate = 0.0  # cosine only
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.98
  config.optimizer.eps = 1e-9
  config.optimizer.weight_decay = 0.0  # adamw only
  # adamw: decay only matrices (kernels, embeddings), not biases and norms
  config.optimizer.decay_only_matrices = False
  config.optimizer.grad_clip_norm = 0.0  # 0: no clipping

  config.decode = ml_collections.ConfigDict()
  config.decode.beam_size = 4      # 1: greedy; 0: no decoding at eval
  config.decode.alpha = 0.6        # length penalty ((5+len)/6)^alpha
  config.decode.max_decode_len = 0  # 0: the task's target length
  # Causal LM: the text of the one token every generation starts from
  # ('': EOS, which starts each document of a packed 'lines' corpus). A
  # character LM trained on random offsets never sees EOS start a row.
  config.decode.start_text = ''

  config.log_every = 50            # steps between metric fetches/logs
  config.eval_every = 1000         # steps between evaluations
  config.checkpoint_every = 1000   # steps between checkpoints
  config.keep_checkpoints = 3      # newest checkpoints kept
  config.average_last_checkpoints = 0  # >1: also evaluate their mean at the end
  config.init_from = ''            # pre-trained checkpoint to start from
  # Longest wait (s) for a checkpoint save to become durable before the run
  # fails with one line: a stuck background save must never hang a job.
  config.checkpoint_timeout_s = 600.0
  # A step whose loss or gradient norm is not finite is never applied.
  # False: the run stops there (exit code 3); True: it skips that update and
  # goes on, counting skips in the metrics ('train/skipped_updates').
  config.skip_nonfinite_updates = False
  # Peak FLOP/s of one device, for the MFU of the progress line (e.g. 989e12
  # for an H100 SXM in bf16; see training/flops.py). 0: print no MFU.
  config.peak_flops_per_device = 0.0
  config.lock()
  return config


def data_config(**overrides) -> ml_collections.ConfigDict:
  """`config.data`: where examples come from and how they become batches.

  Read by input_data/ (text_sources, pipelines, synthetic, task_data) and
  the tasks; each field is used only by the sources/families named.
  """
  data = ml_collections.ConfigDict()
  data.source = 'synthetic'        # 'synthetic' (from the seed) or 'files'
  data.num_eval_examples = 1000    # synthetic: held-out examples
  # Built-in seq2seq data (input_data/synthetic.py): 'reverse', 'sort' or
  # 'copy' a sequence of synthetic_min_len..synthetic_max_len tokens.
  data.synthetic_task = 'reverse'
  data.synthetic_min_len = 4
  data.synthetic_max_len = 12
  # Files (input_data/text_sources.load_split).
  data.data_dir = ''               # never hard-coded: configs use $DATA_DIR
  data.format = 'lines'            # lines|text|parallel|tsv|csv|jsonl|squad|hf
  data.file_pattern = ''           # '{split}' is replaced by the split name
  data.inputs_pattern = ''         # 'parallel': source-side file
  data.targets_pattern = ''        # 'parallel': target-side file
  data.split_fractions = None      # 'text': {split: (begin, end)} of the file
  data.skip_empty_lines = True     # 'lines': drop blank lines
  data.max_examples = 0            # 0: all; n: the first n (smoke tests)
  # Label budgets (text_sources.load_split): one seeded permutation of the
  # train split; its first heldout_examples form split 'heldout' (a
  # validation slice to tune on), the next train_examples (0: all the rest)
  # are trained on, so a smaller budget is a subset of a larger one.
  data.heldout_examples = 0
  data.train_examples = 0
  data.subsample_seed = 0
  data.hf_name = ''                # 'hf': a datasets name (needs network)
  data.hf_config = ''              # 'hf': its configuration name
  data.train_split = 'train'
  data.eval_split = 'validation'
  # Example fields.
  data.inputs_key = 'inputs'       # seq2seq source text
  data.targets_key = 'targets'     # seq2seq target text
  data.text_key = 'text'           # LM / BERT / classification text
  data.text_pair_key = ''          # classification: second sentence, if any
  data.label_key = 'label'         # classification label
  data.label_type = 'int'          # 'int' classes or 'float' (regression)
  # Lengths (tokens).
  data.max_length = 128            # LM / BERT rows
  data.max_input_length = 64       # seq2seq source
  data.max_target_length = 64      # seq2seq target
  # Pipeline (input_data/pipelines.py, batching.py).
  data.overlong = 'truncate'       # training rows too long: truncate|drop
  data.packing = False             # several examples per row (seq2seq, LM)
  data.num_epochs = None           # None: repeat forever
  data.eval_length_buckets = None  # e.g. [16, 32, 64]: pad eval per bucket
  data.read_threads = 2            # tokenizing threads
  data.random_offsets = False      # LM training rows start at random tokens
  # BERT pre-training (input_data/mlm_masking.py).
  data.document_boundary = 'blank_line'  # or 'wikitext_heading'
  data.mask_rate = 0.15
  data.max_predictions = 0         # 0: no cap on masked positions per row
  data.whole_word_masking = False
  data.nsp = True                  # False: MLM only, one line per row
  data.next_sentence_prob = 0.5
  # Extractive QA (input_data/squad_features.py).
  data.doc_stride = 128
  data.max_query_length = 64
  data.max_answer_length = 30
  # Seq2seq scoring.
  data.rouge = False               # also ROUGE-1/2/L (summarization)
  data.update(overrides)
  data.lock()
  return data


def tokenizer_config(**overrides) -> ml_collections.ConfigDict:
  """`config.tokenizer` (input_data/tokenizers.build_tokenizer)."""
  tok = ml_collections.ConfigDict()
  tok.kind = 'sentencepiece'       # sentencepiece|hf_json|wordpiece|char
  tok.path = ''                    # file to load; '' trains into the workdir
  tok.vocab_size = 8000            # SentencePiece: pieces to train
  tok.model_type = 'unigram'       # SentencePiece: 'unigram' or 'bpe'
  tok.character_coverage = 1.0     # SentencePiece (0.9995 for big alphabets)
  tok.max_training_sentences = 1_000_000  # SentencePiece training sample
  tok.byte_fallback = False        # SentencePiece: unseen chars as bytes
  tok.lowercase = True             # wordpiece: uncased BERT
  tok.update(overrides)
  tok.lock()
  return tok


# Validation ------------------------------------------------------------
# Integer fields and their smallest allowed value. Counts and cadences are
# divisors or loop bounds: 0 would divide by zero or train nothing.
_AT_LEAST = {
    'num_train_steps': 1, 'log_every': 1, 'eval_every': 1,
    'checkpoint_every': 1, 'grad_accum_steps': 1, 'batch_size': 1,
    'eval_batch_size': 1, 'keep_checkpoints': 1,
    'average_last_checkpoints': 0, 'loss_chunk_length': 0, 'num_devices': 0,
    'optimizer.warmup_steps': 0,
    'decode.beam_size': 0, 'decode.max_decode_len': 0,
    'data.num_eval_examples': 1, 'data.synthetic_min_len': 1,
    'data.synthetic_max_len': 1,
    'data.max_examples': 0, 'data.heldout_examples': 0,
    'data.train_examples': 0, 'data.max_length': 1,
    'data.max_input_length': 1, 'data.max_target_length': 1,
    'data.read_threads': 1, 'data.max_predictions': 0,
    'data.doc_stride': 1, 'data.max_query_length': 1,
    'data.max_answer_length': 1,
    'tokenizer.vocab_size': 1, 'tokenizer.max_training_sentences': 1,
}
# Real fields and their allowed interval: (low, high, high included).
_IN_RANGE = {
    'label_smoothing': (0.0, 1.0, False),
    'optimizer.b1': (0.0, 1.0, False),
    'optimizer.b2': (0.0, 1.0, False),
    'data.mask_rate': (0.0, 1.0, True),
    'data.next_sentence_prob': (0.0, 1.0, True),
    'tokenizer.character_coverage': (0.0, 1.0, True),
}
# Real fields that must be finite and >= 0 (rates, norms, FLOP/s, seconds).
_NON_NEGATIVE = (
    'optimizer.learning_rate', 'optimizer.end_learning_rate',
    'optimizer.eps', 'optimizer.weight_decay', 'optimizer.grad_clip_norm',
    'peak_flops_per_device')
_CHOICES = {
    'parallelism': ('pmap', 'mesh'),
    'optimizer.name': ('adam', 'adamw'),
    'optimizer.schedule': ('rsqrt', 'cosine', 'constant'),
}


def validate(config, num_devices: int | None = None):
  """Raises ValueError naming the first field whose value cannot work;
  with `num_devices` (train.py's check of this machine), also a config.mesh
  that does not fit them and an attention this backend cannot run."""
  check_sub_configs(config)
  for name, low in _AT_LEAST.items():
    value = _get(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise UserError(f'config.{name}={value!r} must be an integer >= {low}')
  for name, (low, high, closed) in _IN_RANGE.items():
    value = _get(config, name)
    if not (_is_real(value) and low <= value and (
        value <= high if closed else value < high)):
      bracket = ']' if closed else ')'
      raise UserError(
          f'config.{name}={value!r} must be in [{low:g}, {high:g}{bracket}')
  for name in _NON_NEGATIVE:
    value = _get(config, name)
    if not (_is_real(value) and value >= 0):
      raise UserError(f'config.{name}={value!r} must be finite and >= 0')
  if not (_is_real(config.checkpoint_timeout_s) and
          config.checkpoint_timeout_s > 0):
    raise UserError(f'config.checkpoint_timeout_s='
                     f'{config.checkpoint_timeout_s!r} must be finite and > 0')
  for name, choices in _CHOICES.items():
    if _get(config, name) not in choices:
      raise UserError(f'config.{name}={_get(config, name)!r} is not one of '
                       f'{", ".join(choices)}')
  data = config.data
  if data.synthetic_max_len < data.synthetic_min_len:
    raise UserError(
        f'config.data.synthetic_max_len={data.synthetic_max_len} is below '
        f'config.data.synthetic_min_len={data.synthetic_min_len}')
  if not _is_real(config.decode.alpha):
    raise UserError(f'config.decode.alpha={config.decode.alpha!r} must be '
                     'finite')
  model_config_from(config.model)  # one line naming a bad model field
  check_averaging(config)
  check_mesh(config, num_devices)
  if num_devices is not None:
    check_backend(config, jax.default_backend())


# Sub-configs whose every field is declared here; an experiment changes
# their values, never their set of fields (mesh may name fewer axes).
_SUB_CONFIGS = ('model', 'data', 'tokenizer', 'optimizer', 'decode')


def check_sub_configs(config):
  """Fails in one line naming a declared sub-config that a config file
  replaced by one missing declared fields or adding others (e.g.
  `config.tokenizer = dict(kind='wordpiece')`), which would otherwise fail
  later as a bare KeyError of the first field read."""
  declared = base_config()
  for name in _SUB_CONFIGS:
    value = config.get(name) if hasattr(config, 'get') else None
    if not isinstance(value, (ml_collections.ConfigDict, dict)):
      raise UserError(f'config.{name} is {type(value).__name__}, not the '
                       f'declared sub-config (configs/base_config.py)')
    missing = [k for k in declared[name] if k not in value]
    unknown = [k for k in value if k not in declared[name]]
    if missing or unknown:
      problem = '; '.join(filter(None, [
          missing and 'lacks ' + ', '.join(missing),
          unknown and 'has undeclared ' + ', '.join(unknown)]))
      raise UserError(
          f'config.{name} {problem}: a config file replaced the declared '
          f'sub-config; set its fields instead (config.{name}.update(...) '
          f'or config.{name}.<field> = ...)')


def check_backend(config, backend: str):
  """Fails in one line if the config needs a device that `backend`
  (jax.default_backend(): 'cpu', 'gpu', 'tpu') is not."""
  if config.model.attention_impl == 'cudnn' and backend != 'gpu':
    raise UserError(
        "config.model.attention_impl='cudnn' needs a GPU (cuDNN flash "
        f"attention) but jax's backend is {backend!r}; use 'fused', "
        "'blockwise' or 'einsum'")


def mesh_shape(mesh, num_devices: int | None) -> dict:
  """config.mesh with its -1 resolved: {axis: size}, sizes multiplying to
  `num_devices`. Raises ValueError naming config.mesh when they cannot
  (num_devices None: only the names and sizes are checked)."""
  sizes = dict(mesh)
  shown = ', '.join(f'{k}={v!r}' for k, v in sizes.items())
  unknown = [a for a in sizes if a not in MESH_AXES]
  if unknown:
    raise UserError(f'config.mesh ({shown}) has unknown axis '
                     f'{unknown[0]!r}; the axes are {", ".join(MESH_AXES)}')
  for axis, size in sizes.items():
    if isinstance(size, bool) or not isinstance(size, int) or not (
        size >= 1 or size == -1):
      raise UserError(f'config.mesh.{axis}={size!r} must be an integer >= 1 '
                       'or -1 (the devices the other axes leave)')
  free = [a for a, size in sizes.items() if size == -1]
  if len(free) > 1:
    raise UserError(f'config.mesh ({shown}) may have one axis of -1, not '
                     f'{len(free)}')
  fixed = math.prod(size for size in sizes.values() if size != -1)
  if num_devices is None:
    return sizes
  if num_devices % fixed:
    raise UserError(f'config.mesh ({shown}): its sizes multiply to {fixed}, '
                     f'which does not divide the {num_devices} devices')
  if not free and fixed != num_devices:
    raise UserError(f'config.mesh ({shown}) uses {fixed} of the '
                     f'{num_devices} devices; set one axis to -1 to use all')
  if free:
    sizes[free[0]] = num_devices // fixed
  return sizes


def check_mesh(config, num_devices: int | None = None):
  """config.mesh and config.logical_axis_rules name known axes and fit
  `num_devices` (when given); pmap takes only a data axis."""
  mesh = dict(config.mesh)
  mesh_shape(mesh, num_devices)
  if config.parallelism == 'pmap' and any(
      size not in (1, -1) for axis, size in mesh.items() if axis != 'data'):
    raise UserError(f'config.mesh={mesh} splits over fsdp or '
                     "tensor, which needs config.parallelism='mesh'")
  rules = config.logical_axis_rules
  for rule in rules if isinstance(rules, (list, tuple)) else [rules]:
    if not (isinstance(rule, (list, tuple)) and len(rule) == 2):
      raise UserError(f'config.logical_axis_rules entry {rule!r} is not a '
                       '(logical axis, mesh axis or axes or None) pair')
    name, axes = rule
    if name not in LOGICAL_AXES:
      raise UserError(f'config.logical_axis_rules names unknown logical axis'
                       f' {name!r}; the logical axes are '
                       f'{", ".join(LOGICAL_AXES)}')
    for axis in axes if isinstance(axes, (list, tuple)) else [axes]:
      if axis is not None and axis not in mesh:
        raise UserError(f'config.logical_axis_rules maps {name!r} to '
                         f'unknown mesh axis {axis!r}; the mesh axes are '
                         f'{", ".join(mesh)}')


def check_averaging(config):
  """Fails before training if the run cannot end with the N checkpoints
  that config.average_last_checkpoints asks to average."""
  wanted = config.average_last_checkpoints
  if wanted <= 1:
    return
  total, every = config.num_train_steps, config.checkpoint_every
  saved = total // every + (1 if total % every else 0)
  if wanted > min(saved, config.keep_checkpoints):
    raise UserError(
        f'config.average_last_checkpoints={wanted} but the run keeps '
        f'{min(saved, config.keep_checkpoints)} checkpoints '
        f'(config.keep_checkpoints={config.keep_checkpoints}, one every '
        f'config.checkpoint_every={every} of {total} steps)')


def _get(config, dotted: str):
  for part in dotted.split('.'):
    config = config[part]
  return config


def _is_real(value) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))
