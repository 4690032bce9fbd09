"""No secret in any log line: a logging filter that masks token-shaped values (format.mask_secrets).

A client can put its token where servers log verbatim: the path (`GET /kw_…`), the Referer (a page
whose URL holds it), the User-Agent, a malformed request line. The filter rewrites each record's
message (and a traceback's text) before any handler formats it, so every log line shows such a
value as `kw_••••` + its last 4 characters, as the UI does.

Logger filters see only records made on that very logger, and handler filters every record that
reaches the handler, so `install` puts the filter on both: the root logger and its handlers
(records of every module propagate there), gunicorn's error and access loggers and their handlers
(which do not propagate), Flask's default handler and logging's last-resort handler. The app
installs it (create_app) and so does gunicorn.conf.py (for the lines gunicorn writes before and
around the app).
"""

from __future__ import annotations

import logging

from shared.tokens.format import mask_secrets

LOGGER_NAMES = ("", "gunicorn.error", "gunicorn.access")


class SecretMaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as logging does
            return True
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        return True


_FILTER = SecretMaskingFilter()


def _add(target: logging.Filterer) -> None:
    if not any(isinstance(existing, SecretMaskingFilter) for existing in target.filters):
        target.addFilter(_FILTER)


def install(*extra_loggers: logging.Logger) -> None:
    """Mask secrets on the root, gunicorn's loggers, `extra_loggers`, and all their handlers now."""
    loggers = [logging.getLogger(name) for name in LOGGER_NAMES] + list(extra_loggers)
    handlers: list[logging.Handler] = [handler for logger in loggers for handler in logger.handlers]
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    try:
        from flask.logging import default_handler
    except ImportError:  # gunicorn.conf.py may run where Flask is not importable
        pass
    else:
        handlers.append(default_handler)
    for target in [*loggers, *handlers]:
        _add(target)


def install_secret_masking(app) -> None:
    install(app.logger, logging.getLogger("keyward"))
