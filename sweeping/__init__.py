"""Hyperparameter sweeps over train.py, driven by Optuna.

  spec.py     the search space a config module's get_sweep() returns, checked
  study.py    the Optuna study: storage, sampler, pruner, budget, retries
  trials.py   one trial: a train.py process, its metrics, its outcome
  workers.py  N trials at once on this machine's devices, progress line
  report.py   table (markdown, CSV), plots, TensorBoard HParams

Nothing here imports the training code: a trial is a `train.py` command and
its workdir (metrics.jsonl, checkpoints), so a crash stays in its process.
"""
