"""BERT models of Google's released sizes (Devlin et al. 2018; Turc et al. 2019).

    get_config('size=base')              # BERT-base, pre-training heads
    get_config('size=tiny,model_name=bert_classifier')

Sizes: tiny L2/H128, mini L4/H256, small L4/H512, medium L8/H512,
base L12/H768, large L24/H1024; heads H/64, feed-forward 4H, WordPiece vocab
30522, 512 positions, 2 token types. BERT-base has 109,482,240 parameters and
BERT-large 335,141,888 (encoder + pooler, as HF BertModel counts them).
This file only describes the network; a training config adds the task,
data and optimizer on top of `get_config()`.
"""
import ml_collections

from configs.base_config import parse_options

# name: (num_layers, d_model)
SIZES = {
    'tiny': (2, 128),
    'mini': (4, 256),
    'small': (4, 512),
    'medium': (8, 512),
    'base': (12, 768),
    'large': (24, 1024),
}


def bert_model(size: str) -> dict:
  """ModelConfig fields of BERT-`size`."""
  if size not in SIZES:
    raise ValueError(f'BERT size {size!r} is not one of {", ".join(SIZES)}')
  num_layers, d_model = SIZES[size]
  return dict(
      vocab_size=30522,
      d_model=d_model,
      num_heads=d_model // 64,
      d_ff=4 * d_model,
      num_layers=num_layers,
      dropout_rate=0.1,
      attention_dropout_rate=0.1,
      activation='gelu',              # exact (erf) GELU
      norm_position='post',
      final_layer_norm=False,
      embedding_layer_norm=True,
      layer_norm_epsilon=1e-12,
      position_embedding='learned',
      max_len=512,
      type_vocab_size=2,
      num_labels=2,
      tie_output_embedding=True,      # masked-LM output = word embeddings
      scale_embedding=False,
      init_std=0.02,                  # N(0, 0.02) kernels and embeddings
  )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """arg: 'size=base' (default) and optionally ',model_name=bert_qa' etc."""
  options = parse_options(arg, size='base', model_name='bert_pretraining')
  config = ml_collections.ConfigDict()
  config.model_name = options['model_name']  # a name in models/registry.py
  config.model = bert_model(options['size'])  # ModelConfig fields
  return config
