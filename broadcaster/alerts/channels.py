"""The channels that carry alert messages: e-mail (SMTP) and a webhook (HTTP POST of JSON).

Stdlib only (``smtplib``, ``urllib.request``). ``send`` delivers one :class:`Notice` or raises
:class:`DeliveryError` whose text never holds a secret: every failure, whatever its type, is turned
into a short redacted line (an exception's own text may quote a header value or the URL, and a bot
URL holds its token). Tracebacks are not logged for the same reason.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from email.header import Header
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, getaddresses, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from broadcaster.alerts.config import AlertsConfigError, SmtpChannelConfig, WebhookChannelConfig
from broadcaster.alerts.messages import Notice

_LOGGER = logging.getLogger(__name__)

# Secrets shorter than this are not searched for in error texts: "***" everywhere a 2-letter
# password happens to appear would make the logs unreadable, and such a secret protects nothing.
_MIN_SECRET_LEN = 4
# Bytes of a webhook's answer read (and dropped): enough to finish the exchange, never a large body.
_ANSWER_READ = 64 * 1024
_USER_AGENT = "loa-xa-alerts/1"


class DeliveryError(Exception):
    """A message could not be delivered; the text is safe to log."""


class Channel(Protocol):
    """Carries one notice. ``name`` is safe to log; ``kinds`` None means every alert kind."""

    name: str
    kinds: frozenset[str] | None

    def send(self, notice: Notice) -> None:
        """Deliver ``notice`` or raise :class:`DeliveryError` (with a text free of secrets)."""
        ...


class _Redactor:
    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def error(self, what: str, exc: BaseException) -> DeliveryError:
        return DeliveryError(self(f"{what}: {type(exc).__name__}: {exc}")[:500])


def _tls_context(ca_file: Path | None, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SmtpChannel:
    """E-mail to every recipient of the channel, through one SMTP session per message."""

    def __init__(self, config: SmtpChannelConfig, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.name = config.name or f"smtp:{config.host}:{config.effective_port}"
        self.kinds = frozenset(config.kinds) if config.kinds is not None else None
        self._password = config.resolve_password(environ)
        self._redact = _Redactor([self._password])
        if config.username and self._password is None:
            raise AlertsConfigError(f"alert channel {self.name}: username given without a password")
        if config.security == "plain" and config.username:
            _LOGGER.warning("alert channel %s sends its password unencrypted (security: plain)", self.name)

    def message(self, notice: Notice) -> MIMEText:
        """The e-mail: UTF-8 text; subject and names as RFC 2047 encoded words. Built with
        ``email.header.Header``: the newer ``email.policy`` folder drops the space between two encoded
        words of a long Vietnamese subject ("nguồn dự" arrived as "nguồndự")."""
        message = MIMEText(notice.text, "plain", "utf-8")
        message["Subject"] = Header(notice.subject, "utf-8")
        message["From"] = _address_header(self.config.from_)
        message["To"] = ", ".join(_address_header(a) for a in self.config.to)
        message["Date"] = formatdate(localtime=True)
        domain = parseaddr(self.config.from_)[1].rpartition("@")[2] or None
        message["Message-ID"] = make_msgid(domain=domain)
        return message

    def send(self, notice: Notice) -> None:
        config = self.config
        message = self.message(notice)
        try:
            context = _tls_context(config.ca_file, config.verify_tls)
            port = config.effective_port
            if config.security == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    config.host, port, timeout=config.timeout_s, context=context
                )
            else:
                client = smtplib.SMTP(config.host, port, timeout=config.timeout_s)
            with client:
                client.ehlo()
                if config.security == "starttls":
                    client.starttls(context=context)
                    client.ehlo()
                if config.username:
                    client.login(config.username, self._password or "")
                refused = client.send_message(
                    message,
                    from_addr=parseaddr(config.from_)[1] or None,
                    to_addrs=[address for _, address in getaddresses(config.to)],
                )
        except Exception as exc:  # smtplib, ssl, socket errors and anything else: one redacted line
            raise self._redact.error(f"e-mail through {self.name} failed", exc) from None
        if refused:
            _LOGGER.warning("alert channel %s: recipients refused: %s", self.name, ", ".join(sorted(refused)))


class WebhookChannel:
    """One POST of the notice's JSON (UTF-8, ``ensure_ascii=False``) per message; 2xx is success."""

    def __init__(self, config: WebhookChannelConfig, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        url = config.url.get_secret_value()
        parts = urlsplit(url)
        self._url = url
        # The host only: the path and query of a bot URL hold its token.
        self.name = config.name or f"webhook:{parts.scheme}://{parts.hostname}:{parts.port or ''}".rstrip(":")
        self.kinds = frozenset(config.kinds) if config.kinds is not None else None
        secret = config.resolve_secret(environ)
        self._headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": _USER_AGENT,
            **{k: v.get_secret_value() for k, v in config.headers.items()},
        }
        if secret is not None:
            header = config.secret_header
            self._headers[header] = f"Bearer {secret}" if header.lower() == "authorization" else secret
        self._context = _tls_context(config.ca_file, config.verify_tls) if parts.scheme == "https" else None
        self._redact = _Redactor(
            [
                secret,
                parts.path if len(parts.path) > 1 else None,
                parts.query,
                parts.password,
                *(v.get_secret_value() for v in config.headers.values()),
            ]
        )

    def body(self, notice: Notice) -> bytes:
        return json.dumps({**notice.payload, **self.config.fields}, ensure_ascii=False).encode("utf-8")

    def send(self, notice: Notice) -> None:
        request = urllib.request.Request(
            self._url, data=self.body(notice), headers=self._headers, method="POST"
        )
        try:
            with urllib.request.urlopen(
                request, timeout=self.config.timeout_s, context=self._context
            ) as answer:
                answer.read(_ANSWER_READ)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise DeliveryError(f"webhook {self.name} answered HTTP {exc.code}") from None
        except Exception as exc:
            raise self._redact.error(f"webhook {self.name} failed", exc) from None


def _address_header(value: str) -> str:
    """``"Loa xã <loa@xa.vn>"`` -> the same with the name as an encoded word (ASCII header)."""
    name, address = parseaddr(value)
    return formataddr((name, address), charset="utf-8") if name else address


def build_channel(
    config: SmtpChannelConfig | WebhookChannelConfig, environ: Mapping[str, str] | None = None
) -> Channel:
    if isinstance(config, SmtpChannelConfig):
        return SmtpChannel(config, environ)
    return WebhookChannel(config, environ)
