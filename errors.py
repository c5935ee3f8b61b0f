"""The one error for bad input: a config field, a file, a flag, a workdir.

Every module may raise it (it imports nothing from the project, so that
input_data, models, tasks and configs import it without cycles), and the
command-line programs print it as one line `error: <message>` with exit
code 1 (training/exit_codes.py). Any other exception is a bug and keeps
its traceback. Specific kinds (a damaged data file, a bad sweep spec, a
checkpoint of another model) subclass it.

It is a ValueError, as the bad input it replaces was, so that callers that
catch ValueError (and tests that expect one) still do.
"""


class UserError(ValueError):
  """Bad input that the user can fix; the message is one line naming the
  culprit (the flag, the config field, the file)."""
