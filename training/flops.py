r"""Model FLOPs of a training step, counted from the config, and MFU.

Only matmuls are counted, at 2·m·k·n each (a multiply and an add). Training
is 3x the forward pass: the backward pass does two matmuls per forward
matmul (the gradient with respect to the input and to the weight). This is
the convention of Kaplan et al. 2020 and of PaLM's model FLOPs utilisation
(Chowdhery et al. 2022, appendix B). Not counted: elementwise work
(softmax, LayerNorm, GELU, dropout, Adam), embedding look-ups, and the
forward pass that rematerialisation repeats (that would be hardware FLOPs,
not model FLOPs).

Per token of one stack of L layers over sequences of length s this is
the familiar

    6·N + 12·L·d·s

N counts the matmul weights: 4·d² for attention (2·d² + 2·d·d_kv with
grouped-query key/value heads) and 2·d·d_ff for the feed-forward block
(3·d·d_ff gated) per layer, plus d·V for the output logits. The term
12·L·d·s covers q·kᵀ and p·v (2·2·s·d per token and layer forward, x3). A
causal mask does not halve it, because the einsum computes the whole s x s
score matrix. PaLM counts it the same way.

The families differ only in which stacks run and over which tokens:
  decoder LM:       one stack over s tokens; logits at every position.
  BERT pre-training: one stack; the MLM head (d² transform + d·V logits)
                    only at `mlm_positions` per row (data.max_predictions,
                    or all s); pooler d² + NSP 2·d on [CLS].
  encoder-decoder:  encoder over S source tokens; each decoder layer has
                    causal self-attention over T target tokens, cross-attention
                    whose key/value projections run on the S encoder outputs
                    (4·d² per source token and decoder layer), and scores
                    over S; logits at the T target positions.
Training FLOPs of a step = 3 x `forward_flops` x batch. `tests/test_flops.py`
checks this against XLA's own count (`cost_analysis()['flops']`) of the
jitted train step.
"""
import dataclasses

# Dense bf16 matmul peak from the data sheets (no sparsity), FLOP/s, by a
# substring of `jax.devices()[0].device_kind`. The order matters: the first
# match wins.
GPU_PEAK_BF16 = (
    ('H200', 989e12),
    ('H100 PCIe', 756e12),
    ('H100', 989e12),     # SXM
    ('A100', 312e12),
    ('L4', 121e12),
    ('V100', 125e12),     # fp16 tensor cores
)

# The formulas of `forward_flops`; each task class names its own
# (`Task.flops_family`) and its lengths (`Task.step_shape`).
FORMULA_FAMILIES = ('encoder_decoder', 'decoder_lm', 'bert_pretraining',
                    'bert_classifier', 'bert_qa')


@dataclasses.dataclass(frozen=True)
class StepShape:
  """What one training example looks like to the network (its padded
  lengths): what training/flops.py counts FLOPs and tokens over."""
  source_len: int = 0      # encoder-decoder: S
  target_len: int = 0      # encoder-decoder: T
  seq_len: int = 0         # decoder LM and BERT: s
  mlm_positions: int = 0   # BERT pre-training: MLM head rows (0: all s)

  @property
  def tokens(self) -> int:
    """Token positions per example that the network reads (S + T or s)."""
    return self.source_len + self.target_len + self.seq_len


def _kv_width(model_cfg):
  """Width of the key and value projections (< d with grouped queries)."""
  return model_cfg.kv_heads * model_cfg.head_dim


def _ffn_matrices(model_cfg):
  return 3 if model_cfg.ffn_kind == 'gated' else 2  # gated: W1, W3, W2


def _attention(d, q_len, kv_len, kv_d=None):
  """Forward matmul FLOPs of one attention sub-layer for one example."""
  kv_d = kv_d or d
  projections = 2 * d * (2 * d * q_len + 2 * kv_d * kv_len)  # q, out | k, v
  scores = 2 * 2 * q_len * kv_len * d                 # q·kᵀ and p·v
  return projections + scores


def _ffn(d, d_ff, length, matrices=2):
  return 2 * matrices * length * d * d_ff


def forward_flops(model_cfg, family: str, shape: StepShape) -> int:
  """Matmul FLOPs of one example's forward pass (see the module doc)."""
  d, d_ff, vocab = model_cfg.d_model, model_cfg.d_ff, model_cfg.vocab_size
  kv_d, mats = _kv_width(model_cfg), _ffn_matrices(model_cfg)
  if family == 'encoder_decoder':
    s, t = shape.source_len, shape.target_len
    encoder = model_cfg.num_layers * (_attention(d, s, s, kv_d)
                                      + _ffn(d, d_ff, s, mats))
    decoder = model_cfg.decoder_layers * (
        _attention(d, t, t, kv_d) + _attention(d, t, s, kv_d)
        + _ffn(d, d_ff, t, mats))
    return encoder + decoder + 2 * t * d * vocab
  s = shape.seq_len
  stack = model_cfg.num_layers * (_attention(d, s, s, kv_d)
                                  + _ffn(d, d_ff, s, mats))
  if family == 'decoder_lm':
    return stack + 2 * s * d * vocab
  pooler = 2 * d * d
  if family == 'bert_pretraining':
    m = shape.mlm_positions or s
    return stack + 2 * m * (d * d + d * vocab) + pooler + 2 * d * 2
  if family == 'bert_classifier':
    return stack + pooler + 2 * d * model_cfg.num_labels
  if family == 'bert_qa':
    return stack + 2 * s * d * 2
  raise ValueError(f'unknown model family {family!r}; expected one of '
                   f'{", ".join(sorted(FORMULA_FAMILIES))}')


def train_flops(model_cfg, family: str, shape: StepShape,
                batch_size: int) -> int:
  """Model FLOPs of one optimiser step on `batch_size` examples."""
  return 3 * batch_size * forward_flops(model_cfg, family, shape)


def train_flops_per_token(model_cfg, family: str, shape: StepShape) -> float:
  return 3 * forward_flops(model_cfg, family, shape) / shape.tokens


def closed_form_per_token(model_cfg, seq_len: int) -> int:
  """6·N + 12·L·d·s for a decoder LM (equal to `train_flops_per_token`)."""
  d, layers = model_cfg.d_model, model_cfg.num_layers
  n = layers * (2 * d * d + 2 * d * _kv_width(model_cfg)
                + _ffn_matrices(model_cfg) * d * model_cfg.d_ff
                ) + d * model_cfg.vocab_size
  return 6 * n + 12 * layers * d * seq_len


def gpu_peak_flops(device_kind: str) -> float | None:
  """Data-sheet dense bf16 FLOP/s of a GPU, or None if unknown."""
  for name, peak in GPU_PEAK_BF16:
    if name.lower() in device_kind.lower():
      return peak
  return None


def mfu(flops_per_step: float, step_seconds: float, peak: float) -> float:
  """Model FLOPs utilisation: achieved model FLOP/s over the peak."""
  return flops_per_step / step_seconds / peak
