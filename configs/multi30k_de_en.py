r"""Multi30k task 1, German -> English, test_2016_flickr: the reverse
direction of configs/multi30k_en_de.py, with the same model, tokenizer and
schedule (every field but the two file patterns is that config's).

  DATA_DIR=../shared/data python train.py \
      --config=configs/multi30k_de_en.py:steps=5500 \
      --workdir=workdirs/m30k_de_en --config.eval_every=5500

The reference point is the PyTorch tutorial figure of 36.5 lowercased BLEU
(a 3+3-layer, d_model 256 Transformer decoded greedily); ours decodes with
beam 5 and reports both cased sacreBLEU ('bleu') and lowercased 13a BLEU
('bleu_lowercase_tokenized'). Options as multi30k_en_de ('steps=N').

Measured (experiments/multi30k.md): the command above on 2 cores of an
Intel Xeon with AMX (90 minutes for the 5,500 steps, run in four
resumed legs, mostly under load): 40.53 lowercased tokenized
BLEU, 40.29 cased sacreBLEU, from the mean of the last 10 checkpoints;
+4.03 against the tutorial.
"""
from configs import multi30k_en_de


def get_config(arg: str | None = None):
  config = multi30k_en_de.get_config(arg)
  config.data.inputs_pattern = '{split}.de.gz'
  config.data.targets_pattern = '{split}.en.gz'
  return config
