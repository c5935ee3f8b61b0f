"""BERT models of Google's released sizes (Devlin et al. 2018; Turc et al. 2019).

    model_config(**bert_model('base'))   # BERT-base's ModelConfig fields

Sizes: tiny L2/H128, mini L4/H256, small L4/H512, medium L8/H512,
base L12/H768, large L24/H1024 (heads H/64), and MiniLM L6/H384 (12
heads); feed-forward 4H, WordPiece vocab
30522, 512 positions, 2 token types. BERT-base has 109,482,240 parameters and
BERT-large 335,141,888 (encoder + pooler, as HF BertModel counts them).
This module only describes networks (it has no get_config): the training
configs bert_pretraining.py and bert_finetune.py choose a size by name.
"""
from errors import UserError

# name: (num_layers, d_model, num_heads)
SIZES = {
    'tiny': (2, 128, 2),
    'mini': (4, 256, 4),
    'small': (4, 512, 8),
    'medium': (8, 512, 8),
    'base': (12, 768, 12),
    'large': (24, 1024, 16),
    # MiniLM-L6-H384 (Wang et al. 2020; all-MiniLM-L6-v2): 12 heads of 32.
    'minilm': (6, 384, 12),
}


def bert_model(size: str) -> dict:
  """ModelConfig fields of BERT-`size`."""
  if size not in SIZES:
    raise UserError(f'BERT size {size!r} is not one of {", ".join(SIZES)}')
  num_layers, d_model, num_heads = SIZES[size]
  return dict(
      vocab_size=30522,
      d_model=d_model,
      num_heads=num_heads,
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
