"""Notification emails: each notification to its user, when KEYWARD_SMTP_URL is set.

`KEYWARD_SMTP_URL` is `smtp://host:port` (optionally `smtp://user:password@host:port`; STARTTLS
is used when the server offers it, and required when a user name is given, the certificate always
verified, KEYWARD_CA_BUNDLE adding trusted CAs).
Each email has a plain-text and an HTML part (multipart/alternative), rendered from
shared/templates/email/, from KEYWARD_MAIL_FROM.

With email off, notifications are marked handled without sending, so they are not retried for
ever and switching email on later does not flood anyone with old news (docs/decisions.md). A
failed send gives the notification back for the next run. Notifications never hold a secret
(notifications.notify redacts anything shaped like a token value), so neither do the emails.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlparse

from flask import current_app, render_template

from shared.core import tls
from shared.core.config import ConfigError
from shared.models import Notification
from shared.notifications import notices

log = logging.getLogger("keyward.mailer")
SMTP_TIMEOUT_SECONDS = 10
SUBJECT_PREFIX = "Keyward: "


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never the password in a log line or traceback
        return f"SmtpServer({self.host}:{self.port})"


def parse_smtp_url(url: str) -> SmtpServer:
    parts = urlparse(url)
    if parts.scheme != "smtp" or not parts.hostname:
        raise ConfigError("KEYWARD_SMTP_URL must look like smtp://host:port")
    return SmtpServer(parts.hostname, parts.port or 25,
                      unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password else None)


def _clean_header(text: str) -> str:
    return " ".join(text.split())


def subject_for(notification: Notification) -> str:
    """Built from the token's name and the kind (never the free-text detail, e.g. a leak URL)."""
    what = notices.NotificationKind(notification.kind).label
    if notification.token is not None:
        return _clean_header(f"{SUBJECT_PREFIX}token “{notification.token.name}” {what}")
    return _clean_header(f"{SUBJECT_PREFIX}{what[:1].upper()}{what[1:]}")


def build_message(notification: Notification, sender: str) -> EmailMessage:
    context = {"notification": notification, "user": notification.user,
               "organization": notification.organization, "token": notification.token}
    message = EmailMessage()
    message["Subject"] = subject_for(notification)
    message["From"] = sender
    message["To"] = notification.user.email
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(render_template("email/notification.txt", **context))
    message.add_alternative(render_template("email/notification.html", **context), subtype="html")
    return message


class _Connection:
    """One SMTP session for a batch, opened at the first email."""

    def __init__(self, server: SmtpServer):
        self.server = server
        self.smtp: smtplib.SMTP | None = None

    def send(self, message: EmailMessage) -> None:
        if self.smtp is None:
            smtp = smtplib.SMTP(self.server.host, self.server.port, timeout=SMTP_TIMEOUT_SECONDS)
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=tls.client_context())
                smtp.ehlo()
            elif self.server.username:
                # A server (or someone in between) that does not offer STARTTLS never gets the password.
                smtp.close()
                raise smtplib.SMTPNotSupportedError("STARTTLS is not offered; not sending the password in clear")
            if self.server.username:
                smtp.login(self.server.username, self.server.password or "")
            self.smtp = smtp
        self.smtp.send_message(message)

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                self.smtp.close()


def email_enabled() -> bool:
    return bool(current_app.config.get("KEYWARD_SMTP_URL"))


def send_now(to: str, subject: str, template: str, **context) -> bool:
    """Send one email at once, rendered from `email/<template>.txt` and `.html`: for mail that
    cannot wait for the worker because it carries a one-time link whose secret is never stored
    (an invitation). False when email is off or the server refused; the caller then shows the
    link instead. Never logs the address or the body."""
    url = current_app.config.get("KEYWARD_SMTP_URL")
    if not url:
        return False
    sender = current_app.config["KEYWARD_MAIL_FROM"]
    message = EmailMessage()
    message["Subject"] = _clean_header(f"{SUBJECT_PREFIX}{subject}")
    message["From"] = sender
    message["To"] = to
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(render_template(f"email/{template}.txt", **context))
    message.add_alternative(render_template(f"email/{template}.html", **context), subtype="html")
    connection = _Connection(parse_smtp_url(url))
    try:
        connection.send(message)
    except (smtplib.SMTPException, OSError) as error:
        log.warning("could not send the %s email (%s)", template, type(error).__name__)
        return False
    finally:
        connection.close()
    return True


def send_pending(batch: int = 100) -> int:
    """Email every unsent notification (or mark them handled when email is off); how many were sent."""
    url = current_app.config.get("KEYWARD_SMTP_URL")
    if not url:
        notices.mark_all_emails_handled()
        return 0
    server = parse_smtp_url(url)
    sender = current_app.config["KEYWARD_MAIL_FROM"]
    connection = _Connection(server)
    sent = 0
    try:
        while ids := notices.unsent_ids(batch):
            for notification_id in ids:
                notification = notices.claim_for_email(notification_id)
                if notification is None:
                    continue  # another worker has it
                if not notification.user.is_active:
                    continue  # a deactivated account gets no mail; the claim marks it handled
                try:
                    connection.send(build_message(notification, sender))
                except (smtplib.SMTPException, OSError) as error:
                    notices.release_email_claim(notification_id)
                    # The error's class only: never an address or a message body in the log.
                    log.warning("could not send notification email %s (%s); retrying on the next run",
                                notification_id, type(error).__name__)
                    return sent
                sent += 1
            if len(ids) < batch:
                break
    finally:
        connection.close()
    return sent
