"""Exit codes of the command-line programs, one table for all of them.

train.py uses every code; evaluate.py, predict.py, export.py and sweep.py
end with EXIT_ERROR on bad input (an errors.UserError; `sys.exit('error:
...')` exits with 1, Python's rule for a string argument) and sweep.py with EXIT_STOPPED when a
signal stopped its trials. sweeping/trials.py reads train.py's code with
these names. README "Exit codes of train.py" says the same for users.
"""

EXIT_OK = 0
# Bad input (errors.UserError), a full disk or an unwritable workdir: one
# line `error: ...` on stderr. Any other exception is a bug: a traceback.
EXIT_ERROR = 1
# A non-finite loss or gradient norm: the update was not applied.
EXIT_DIVERGED = 3
# Stopped by SIGTERM/SIGINT after a durable checkpoint; the same command
# continues. EX_TEMPFAIL of sysexits.h: "try again later".
EXIT_STOPPED = 75
