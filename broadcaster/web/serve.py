"""Serving the web interface and the API: plain HTTP, or HTTPS with an operator's certificate or the
instance's own. The only import of cheroot.

Browsers open the microphone («Phát trực tiếp») only on secure pages: HTTPS, or the machine itself
(``localhost``). So a controller reached over the commune's network serves HTTPS (``web.https``):

* with ``web.tls_cert_file``/``web.tls_key_file`` (for example Let's Encrypt's ``fullchain.pem`` and
  ``privkey.pem``) those are used as they are: browsers trust them;
* without them, the instance's local certificate authority (the one the broker's node listener
  uses, ``<instance>/mosquitto/tls/ca.crt``, see ``broadcaster/broker/tls.py``) signs a server
  certificate for the web host (``web.tls`` files ``web.crt``/``web.key`` next to the CA), reissued
  when it nears its end or no longer names the host. Officers' browsers trust it once ``ca.crt``
  is installed on their computers (or they accept the warning once).

Why cheroot, not waitress (which served the app before): waitress has no TLS. cheroot is a
pure-Python threaded WSGI server with TLS built in (the standard library's ``ssl``), so one server
serves both cases and behaves the same; a reverse proxy in front (nginx) remains an alternative,
see README.md.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from broadcaster.broker.base import BrokerError, is_wildcard
from broadcaster.broker.tls import TlsMaterial

if TYPE_CHECKING:
    from broadcaster.settings import Settings

_LOGGER = logging.getLogger(__name__)

# Worker threads: the dashboards poll every two seconds and live speech posts four times a second
# per speaker; eight threads serve a commune's handful of officers with room to spare.
THREADS = 8
# A request slower than this (a phone on a weak link uploading a recording) is cut.
TIMEOUT_S = 60
SERVER_NAME = "loa-xa"


class WebTlsError(Exception):
    """The HTTPS certificate or key cannot be used (a clear message for the operator)."""


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None  # the instance CA that signed ``cert`` (None: an operator's certificate)


def web_tls_files(settings: Settings, host: str | None = None) -> TlsFiles:
    """The certificate and key HTTPS uses (see the module docstring): the operator's, or one the
    instance CA issues (and renews) for ``host`` (default: ``settings.host``, or this machine's name
    when it listens on every address)."""
    web = settings.web
    if (web.tls_cert_file is None) != (web.tls_key_file is None):
        raise WebTlsError("give both web.tls_cert_file and web.tls_key_file, or neither")
    if web.tls_cert_file is not None and web.tls_key_file is not None:
        for path in (web.tls_cert_file, web.tls_key_file):
            if not Path(path).is_file():
                raise WebTlsError(f"cannot read {path} (web.tls_cert_file / web.tls_key_file)")
        return TlsFiles(Path(web.tls_cert_file), Path(web.tls_key_file), None)
    from broadcaster.broker.sync import broker_dir

    listen = host or settings.host
    public = socket.gethostname() if is_wildcard(listen) else listen
    material = TlsMaterial(broker_dir(settings) / "tls", public, listen=listen, server_name="web")
    try:
        material.ensure()
    except BrokerError as exc:
        raise WebTlsError(f"cannot issue the web server's certificate: {exc}") from exc
    return TlsFiles(material.server_cert_path, material.server_key_path, material.ca_cert_path)


class WebServer:
    """The app on ``host:port`` (port 0: a free one), over TLS when ``tls`` is given.

    ``serve()`` blocks until ``stop()`` (from another thread or a signal handler); ``start()`` runs
    it in a daemon thread and returns once it listens (tests)."""

    def __init__(
        self,
        app: Callable[..., Any],
        host: str,
        port: int,
        *,
        tls: TlsFiles | None = None,
        threads: int = THREADS,
    ) -> None:
        self.tls = tls
        self.server = wsgi.Server((host, port), app, numthreads=threads, timeout=TIMEOUT_S)
        self.server.server_name = SERVER_NAME
        self.server.error_log = _error_log  # to our log, not stderr
        if tls is not None:
            try:
                self.server.ssl_adapter = BuiltinSSLAdapter(str(tls.cert), str(tls.key))
            except Exception as exc:  # ssl.SSLError, OSError: a clear message, not a traceback
                raise WebTlsError(f"cannot use {tls.cert} / {tls.key} for HTTPS: {exc}") from exc
        self._thread: threading.Thread | None = None
        self._bound = False

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def port(self) -> int:
        return int(self.server.bind_addr[1])

    @property
    def url(self) -> str:
        host = str(self.server.bind_addr[0])
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    def bind(self) -> None:
        """Take the port (``url`` is then known); raises OSError when it is in use."""
        if not self._bound:
            self.server.prepare()
            self._bound = True
            _LOGGER.info("web interface on %s", self.url)

    def serve(self) -> None:
        """Serve until :meth:`stop`."""
        self.bind()
        self.server.serve()

    def start(self) -> WebServer:
        """Serve in a daemon thread; returns once the port is bound."""
        self.bind()
        self._thread = threading.Thread(target=self.server.serve, name="web-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


def _error_log(msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
    # A browser that does not trust the certificate yet drops the handshake: worth a debug line only.
    if "TLS" in msg or "SSL" in msg:
        level = logging.DEBUG
    _LOGGER.log(level, "web server: %s", msg, exc_info=traceback)


def make_web_server(app: Callable[..., Any], settings: Settings, *, threads: int = THREADS) -> WebServer:
    """The server ``broadcaster serve`` runs: HTTPS when ``web.https``, else plain HTTP."""
    tls = web_tls_files(settings) if settings.web.https else None
    return WebServer(app, settings.host, settings.port, tls=tls, threads=threads)


__all__ = ["TlsFiles", "WebServer", "WebTlsError", "make_web_server", "web_tls_files"]
