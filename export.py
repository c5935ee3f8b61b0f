r"""Exports a trained workdir to the Hugging Face layout.

  python export.py --workdir=/tmp/bert_cls --output=/tmp/bert_cls_hf
  python export.py --workdir=/tmp/lm --output=/tmp/lm_hf --average_last=3

Writes config.json, model.safetensors (float32) and the run's tokenizer
files into --output, which `transformers` loads:

  transformers.AutoModelForSequenceClassification.from_pretrained(out)
  transformers.AutoTokenizer.from_pretrained(out)

BERT-family runs (bert_pretraining, classification, extractive_qa) become
BertForPreTraining, BertForSequenceClassification, BertForQuestionAnswering;
causal_lm runs GPT2LMHeadModel, or LlamaForCausalLM with RMSNorm; seq2seq
runs MarianMTModel (the paper's post-LN, sinusoidal model), or
T5ForConditionalGeneration with T5's relative positions. The conversion is
models/hf/, one converter per architecture. A model the layout cannot hold
(rotary positions or post-LN in GPT-2, a LayerNorm epsilon other than
Marian's 1e-5) fails in one line naming the field.
"""
import os

from absl import app
from absl import flags
from absl import logging

from errors import UserError
import train
import trained_run
from input_data import tokenizers
from models import hf

def _token_ids(run) -> dict:
  """Special ids for config.json (built-in data: its own)."""
  tokenizer = run.tokenizer
  if run.task.model_name == 'decoder_lm':
    return dict(bos_token_id=run.task.bos_id, eos_token_id=tokenizer.eos_id)
  if run.task.model_name == 'encoder_decoder':  # padding is 0 by design
    return dict(eos_token_id=tokenizer.eos_id)
  return dict(pad_token_id=tokenizer.pad_id)


def check_output(output: str | None, workdir: str):
  """--output must name a directory to write that is not the run's own
  (its config.json would be overwritten) nor a file."""
  if not output:
    raise UserError('--output is required')
  if os.path.exists(output) and not os.path.isdir(output):
    raise UserError(f'--output={output} is a file; give a directory')
  if os.path.realpath(output) == os.path.realpath(workdir):
    raise UserError(f'--output={output} is the run\'s --workdir: export '
                    "would overwrite the run's config.json; give another "
                    'directory')


def export_run(run: trained_run.TrainedRun, output: str) -> list[str]:
  """Writes the run's model and tokenizer to `output`; the file names."""
  model_name = run.task.model_name
  try:
    files = hf.export_hf_checkpoint(
        run.task.model_config, run.params, model_name, output,
        **_token_ids(run))
    if not run.task.data.synthetic:
      files += tokenizers.save_for_transformers(
          run.config.tokenizer, run.workdir, output,
          run.task.model_config.max_len)
  except OSError as e:  # the output's disk or permissions
    raise UserError(f'--output={output} cannot be written: '
                    f'{e.strerror or e}') from e
  return files


def main(argv):
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it reads
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')

  def command():
    check_output(trained_run.OUTPUT.value, flags.FLAGS.workdir)
    run = trained_run.from_flags()
    files = export_run(run, trained_run.OUTPUT.value)
    arch = hf.architecture(run.task.model_config, run.task.model_name)
    note = ' (built-in data: no tokenizer)' if run.task.data.synthetic else ''
    output = os.path.abspath(trained_run.OUTPUT.value)
    print(f'{arch} from checkpoint(s) {", ".join(map(str, run.steps))} -> '
          f'{output}: {", ".join(files)}{note}')

  trained_run.run_command(command)


if __name__ == '__main__':
  app.run(main, flags_parser=train.parse_flags)
