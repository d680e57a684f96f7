"""TLS for the node's broker connection, and plain words for connection failures (stdlib only).

A node trusts exactly the CA given inline in its config (``ca_pem``, pinned: the system's CAs
are not loaded), or the system's CAs when the config has none (an operator's certificate from a
public CA). TLS 1.2 or newer, and the broker's certificate must name the host of ``mqtt_url``.

:func:`explain_connect_error` turns the exceptions of a failed connect (TCP, TLS handshake,
MQTT CONNACK) into one line a technician can act on; node logs and ``speaker-agent check`` use it.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from dataclasses import dataclass

# OpenSSL X509_V_ERR_* codes seen when a broker's certificate is refused.
_EXPIRED = 10
_NOT_YET_VALID = 9
_UNTRUSTED = frozenset({2, 18, 19, 20, 21, 27})  # unknown issuer, self-signed, untrusted chain
_HOSTNAME_MISMATCH = frozenset({62, 64})  # host name or IP address mismatch

# MQTT 5 CONNACK reason codes (and their MQTT 3.1.1 equivalents) that mean "fix the credentials".
_BAD_LOGIN = frozenset({4, 134})
_NOT_AUTHORIZED = frozenset({5, 135})
_BAD_CLIENT_ID = frozenset({2, 133})
_SERVER_BUSY = frozenset({3, 136, 137, 159})
_BANNED = frozenset({138})


class TlsConfigError(ValueError):
    """A CA certificate that cannot be used (not PEM, damaged)."""


def client_context(ca_pem: str | None) -> ssl.SSLContext:
    """A client context: TLS 1.2+, certificate and host name checked; only ``ca_pem`` trusted when
    given (else the system's CAs). Raises :class:`TlsConfigError` for an unusable ``ca_pem``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_pem:
        if "-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise TlsConfigError("ca_pem is not a PEM certificate (-----BEGIN CERTIFICATE----- ...)")
        try:
            ctx.load_verify_locations(cadata=ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise TlsConfigError(f"ca_pem cannot be loaded: {exc}") from exc
    else:
        ctx.load_default_certs()
    return ctx


@dataclass(frozen=True)
class PeerCertificate:
    subject: str
    issuer: str
    not_after: dt.datetime  # UTC

    def days_left(self, now: dt.datetime | None = None) -> float:
        now = now or dt.datetime.now(dt.UTC)
        return (self.not_after - now).total_seconds() / 86400


def _name(parts: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    fields = dict(item for rdn in parts for item in rdn)
    return fields.get("commonName") or ", ".join(f"{k}={v}" for k, v in fields.items()) or "?"


def peer_certificate(sock: ssl.SSLSocket | ssl.SSLObject) -> PeerCertificate | None:
    """The verified certificate the broker presented (after a successful handshake)."""
    cert = sock.getpeercert()
    if not cert:
        return None
    not_after = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert["notAfter"])), dt.UTC)
    return PeerCertificate(_name(cert.get("subject", ())), _name(cert.get("issuer", ())), not_after)


def explain_connect_error(exc: BaseException, host: str, port: int, reason_code: int | None = None) -> str:
    """One plain line for a failed connection to ``host:port`` (TCP, TLS or MQTT login)."""
    where = f"{host}:{port}"
    if reason_code is not None:
        if reason_code in _BAD_LOGIN:
            return "login refused: wrong user name or password (re-enroll the cluster to get a new one)"
        if reason_code in _NOT_AUTHORIZED:
            # mosquitto answers a wrong password with "not authorized" too.
            return (
                "login refused: not authorized (wrong password, or the cluster was disabled, deleted "
                "or its password reset on the controller: re-enroll it)"
            )
        if reason_code in _BAD_CLIENT_ID:
            return "login refused: the broker does not accept this client id (the speaker id)"
        if reason_code in _BANNED:
            return "login refused: this cluster is banned by the broker"
        if reason_code in _SERVER_BUSY:
            return f"login refused: the broker is unavailable or busy (reason code {reason_code})"
        return f"login refused by the broker (reason code {reason_code}: {exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        detail = exc.verify_message or str(exc)
        if code == _EXPIRED:
            return f"TLS: the broker's certificate has expired ({detail}); the controller must renew it"
        if code == _NOT_YET_VALID:
            return f"TLS: the broker's certificate is not valid yet ({detail}); check this computer's clock"
        if code in _HOSTNAME_MISMATCH:
            return f"TLS: the broker's certificate is not for host {host!r} ({detail}); check mqtt_url"
        if code in _UNTRUSTED:
            return (
                f"TLS: the broker's certificate is not signed by the trusted CA ({detail}); "
                "check ca_pem (re-enroll the cluster)"
            )
        return f"TLS: the broker's certificate was refused ({detail})"
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or exc
        return f"TLS handshake with {where} failed ({reason}); is it the broker's TLS port?"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker's host name {host!r} (DNS, or a typo in mqtt_url)"
    if isinstance(exc, ConnectionRefusedError):
        return f"the broker refused the connection at {where} (not running, or wrong port)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {where} (network down, firewall, or wrong address)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot reach {where}: {exc.strerror}"
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:  # a wrapped verification error that lost its type
        if "expired" in text:
            return "TLS: the broker's certificate has expired; the controller must renew it"
        return f"TLS: the broker's certificate was refused ({text})"
    return f"cannot connect to {where}: {text}"
