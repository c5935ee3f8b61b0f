"""Inputs a new user gets wrong end in one line naming the culprit, before
anything is written, and never echo a password: train.py, evaluate.py,
predict.py, export.py and sweep.py."""
import json
import os
import subprocess
import sys

import pytest

import conftest
import export
import predict
from configs import base_config, causal_lm, default
from input_data import text_sources
from sweeping import study as study_lib
from training import loop, run_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE_DEVICE = {**os.environ, 'XLA_FLAGS': (
    f'--xla_force_host_platform_device_count=1 {conftest.COLLECTIVE_TIMEOUTS}')}


def tiny_config(**overrides):
  config = default.get_config()
  config.update_from_flattened_dict({
      'model.d_model': 16, 'model.d_ff': 32, 'model.num_layers': 1,
      'num_devices': 1, 'batch_size': 8, 'eval_batch_size': 8,
      'data.num_eval_examples': 8, 'num_train_steps': 2, 'log_every': 1,
      'eval_every': 1000, 'checkpoint_every': 2, 'decode.beam_size': 0,
      'optimizer.warmup_steps': 1, **overrides})
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """One tiny finished seq2seq run, shared by the tests that read one."""
  workdir = str(tmp_path_factory.mktemp('runs') / 'seq2seq')
  loop.train_and_evaluate(tiny_config(), workdir)
  return workdir


def cli(*args, stdin=''):
  """Runs a command on one device -> (exit code, stdout, stderr lines)."""
  done = subprocess.run([sys.executable, *args], cwd=REPO, env=ONE_DEVICE,
                        input=stdin, capture_output=True, text=True,
                        timeout=300)
  return done.returncode, done.stdout, done.stderr.strip().splitlines()


# ------------------------------------------------------------- train.py --
def test_rows_longer_than_the_positions_fail_before_anything_is_written(
    tmp_path):
  # Used to train and stop at step 1 as 'diverged' (NaN positions).
  workdir = tmp_path / 'w'
  with pytest.raises(ValueError, match=r'config.data.synthetic_max_len=12 '
                     r'gives rows of 13 positions but config.model.max_len=8 '
                     r'\(sinusoidal positions\)'):
    loop.train_and_evaluate(tiny_config(**{'model.max_len': 8}),
                             str(workdir))
  assert not workdir.exists()


def test_a_sub_config_replaced_by_a_dict_names_it_and_its_missing_fields():
  config = tiny_config()
  config.tokenizer = dict(kind='wordpiece', path='', lowercase=True)
  with pytest.raises(ValueError, match=r'config.tokenizer lacks .*'
                     r'vocab_size.*: a config file replaced the declared'):
    base_config.validate(config)


def test_data_found_bad_once_the_run_began_leaves_no_workdir(tmp_path):
  # The data are read after the workdir's lock and config.json: a failed
  # first run removes what it made.
  (tmp_path / 'blank.txt').write_text('\n\n\n')
  config = causal_lm.get_config()
  config.update_from_flattened_dict({
      'data.source': 'files', 'data.format': 'lines',
      'data.data_dir': str(tmp_path), 'data.file_pattern': 'blank.txt',
      'tokenizer.kind': 'char', 'num_devices': 1, 'batch_size': 2,
      'model.d_model': 16, 'model.d_ff': 32, 'model.num_heads': 2,
      'model.num_layers': 1})
  workdir = tmp_path / 'w'
  with pytest.raises(ValueError, match=r"split 'train' of .*blank.txt has "
                     'no examples'):
    loop.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


def test_a_workdir_of_another_task_is_named(trained):
  before = open(os.path.join(trained, 'config.json')).read()
  config = causal_lm.get_config()
  config.update_from_flattened_dict({
      'num_devices': 1, 'model.d_model': 16, 'model.d_ff': 32,
      'model.num_heads': 2, 'model.num_layers': 1})
  with pytest.raises(ValueError, match=r"holds a run of task 'seq2seq' but "
                     r"this config trains 'causal_lm'"):
    loop.train_and_evaluate(config, trained)
  assert open(os.path.join(trained, 'config.json')).read() == before


def test_a_file_as_workdir_and_an_empty_data_dir_are_one_line(tmp_path):
  path = tmp_path / 'f.txt'
  path.write_text('x')
  with pytest.raises(ValueError, match='it is a file, not a directory'):
    loop.check_workdir(str(path))
  with pytest.raises(ValueError, match='config.data.data_dir is empty: set '
                     'DATA_DIR'):
    text_sources.resolve_data_dir('')


def _full_disk_supported() -> bool:
  try:
    return subprocess.run(['unshare', '-r', '-m', 'true'],
                          capture_output=True, timeout=30).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


@pytest.mark.skipif(not _full_disk_supported(),
                    reason='needs unshare -r -m (a private tmpfs)')
def test_a_full_disk_is_the_one_line_without_orbax_tracebacks(tmp_path):
  # A real full disk: a 1 MiB tmpfs in a private mount namespace; the
  # first checkpoint (2.5 MB of parameters and moments) does not fit.
  mount = tmp_path / 'small'
  mount.mkdir()
  flags_ = ' '.join(
      f'--config.{k}={v}' for k, v in {
          'num_devices': 1, 'num_train_steps': 4, 'checkpoint_every': 2,
          'eval_every': 1000, 'decode.beam_size': 0}.items())
  script = (f'mount -t tmpfs -o size=1m none {mount} && '
            f'{sys.executable} train.py --config=configs/default.py '
            f'--workdir={mount}/w {flags_}')
  done = subprocess.run(['unshare', '-r', '-m', 'sh', '-c', script],
                        cwd=REPO, env=ONE_DEVICE, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 1, done.stderr[-2000:]
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1, done.stderr[-3000:]
  assert lines[0].startswith(f'error: --workdir={mount}/w is out of space')
  assert 'saving a checkpoint' in lines[0]


# ------------------------------------------------------- data files --
def _squad_split(tmp_path, articles):
  (tmp_path / 'squad.json').write_text(json.dumps({'data': articles}))
  data = base_config.data_config(format='squad', data_dir=str(tmp_path),
                                 file_pattern='squad.json', source='files')
  return text_sources.load_split(data, 'train')


def test_a_squad_paragraph_without_context_names_where(tmp_path):
  with pytest.raises(text_sources.DataError, match=r'squad.json: article 0 '
                     r'paragraph 1 has no "context"'):
    _squad_split(tmp_path, [{'title': 't', 'paragraphs': [
        {'context': 'a b', 'qas': []},
        {'qas': [{'id': '1', 'question': 'q?', 'answers': []}]}]}])


def test_a_squad_file_without_questions_names_the_file(tmp_path):
  with pytest.raises(text_sources.DataError, match=r'squad.json: no '
                     'questions'):
    _squad_split(tmp_path, [{'title': 't', 'paragraphs': [
        {'context': 'a b', 'qas': []}]}])


def test_a_directory_given_as_a_file_says_so(tmp_path):
  with pytest.raises(text_sources.DataError, match='is a directory, not a '
                     'file'):
    text_sources.read_lines(str(tmp_path))


# -------------------------------------- evaluate, predict, export --
def test_workdirs_that_are_not_runs_are_named(tmp_path):
  base = base_config.base_config()
  (tmp_path / 'file').write_text('x')
  with pytest.raises(ValueError, match='is a file, not a training workdir'):
    run_config.load_or(str(tmp_path / 'file'), base)
  (tmp_path / 'bad').mkdir()
  (tmp_path / 'bad' / 'config.json').write_text('{bad')
  with pytest.raises(ValueError, match=r'bad/config.json cannot be read'):
    run_config.load_or(str(tmp_path / 'bad'), base)


def test_a_hugging_face_directory_as_workdir_is_one_line(tmp_path):
  (tmp_path / 'config.json').write_text(json.dumps(
      {'architectures': ['BertForMaskedLM'], 'hidden_size': 8}))
  code, out, err = cli('evaluate.py', f'--workdir={tmp_path}')
  assert code == 1 and not out, err
  assert err == [f'error: {tmp_path}/config.json is not the config.json of '
                 "a run of train.py (unknown field 'architectures')"]


def test_predict_output_that_cannot_be_a_file_fails_before_predicting(
    trained, tmp_path):
  code, out, err = cli('predict.py', f'--workdir={trained}',
                       f'--output={tmp_path}', stdin='5 9 7\n')
  assert code == 1 and not out
  assert err == [f'error: --output={tmp_path} is a directory; give a file '
                 'name']
  with pytest.raises(ValueError, match='directory .*nowhere does not exist'):
    predict.check_output(str(tmp_path / 'nowhere' / 'out.txt'))


def test_export_refuses_the_runs_own_workdir_and_a_file(trained, tmp_path):
  with pytest.raises(ValueError, match="is the run's --workdir: export would"
                     " overwrite the run's config.json"):
    export.check_output(trained, trained)
  (tmp_path / 'f').write_text('x')
  with pytest.raises(ValueError, match='is a file; give a directory'):
    export.check_output(str(tmp_path / 'f'), trained)


# --------------------------------------------------------- sweep.py --
def test_the_storage_password_is_never_printed(monkeypatch):
  url = 'postgresql://alice:s3cretPW@127.0.0.1:9/none'
  assert study_lib.redact(url) == 'postgresql://alice:***@127.0.0.1:9/none'
  assert study_lib.redact('mysql://bob:pw@h/db') == 'mysql://bob:***@h/db'
  assert study_lib.redact('journal.log') == 'journal.log'
  monkeypatch.setattr(study_lib, '_CREATE_ATTEMPTS', 1)  # no retries
  with pytest.raises(ValueError) as e:
    study_lib.open_storage(url, heartbeat_s=30)
  message = str(e.value)
  assert message.startswith('--storage=postgresql://alice:***@'), message
  assert 's3cretPW' not in message and '\n' not in message


def test_a_sweep_workdir_that_is_a_file_is_one_line(tmp_path):
  (tmp_path / 'f').write_text('x')
  code, out, err = cli('sweep.py', '--config=configs/default.py',
                       f'--workdir={tmp_path}/f')
  assert code == 1 and not out.strip()
  assert err == [f'error: --workdir={tmp_path}/f cannot be made: it is a '
                 'file']
