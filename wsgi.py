import sys

from shared.app import create_app
from shared.core.config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    # One clear line instead of a traceback, for `flask --app wsgi ...` and gunicorn alike. Exit
    # status 3 is gunicorn's "worker failed to boot": the server stops instead of respawning
    # workers that can never start.
    sys.stderr.write(f"Keyward cannot start: {error}\n")
    raise SystemExit(3) from None
