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

from cli import command
from cli import flags as cli_flags
from errors import UserError
from training import trained_run


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


def export_and_print(output: str | None):
  check_output(output, cli_flags.WORKDIR.value)
  run = cli_flags.trained_run_of_flags()
  files = trained_run.export_run(run, output)
  arch = run.task.export_architecture()
  note = ' (built-in data: no tokenizer)' if run.task.builtin_data else ''
  print(f'{arch} from checkpoint(s) {", ".join(map(str, run.steps))} -> '
        f'{os.path.abspath(output)}: {", ".join(files)}{note}')


def main(argv):
  command.start(argv)
  command.require('workdir')
  command.reporting_user_errors(
      lambda: export_and_print(cli_flags.OUTPUT.value))


if __name__ == '__main__':
  command.run(main)
