"""The web interface over HTTPS (``web.https``): browsers open the microphone only on secure pages.

``broadcaster serve`` with ``web.https`` answers over TLS with a certificate the instance's own CA
signed (the CA of the broker's node listener), verified here with an SSL context pinned to that CA;
an officer logs in there and gets the «Phát trực tiếp» page. An operator's certificate is used as
given; a missing or half-given one is refused before anything starts, with a clear message."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from broadcaster.broker import free_port
from broadcaster.broker.tls import TlsMaterial
from broadcaster.settings import load_settings
from broadcaster.web.serve import WebServer, WebTlsError, web_tls_files
from tests.fixtures_controller import wait_until
from tests.fixtures_web import PASSWORD

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def _env(instance: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    env.update(
        BROADCASTER_TTS__ORDER="[espeak-ng]",
        BROADCASTER_SCHEDULING__SCHEDULES_DIR=str(instance / "schedules"),
        BROADCASTER_WEB__HTTPS="true",
    )
    return env


def _opener(
    context: ssl.SSLContext, jar: http.cookiejar.CookieJar | None = None
) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context),
        urllib.request.HTTPCookieProcessor(jar if jar is not None else http.cookiejar.CookieJar()),
    )


def test_serve_with_https_answers_over_tls_with_the_instance_ca_and_the_live_page_works(
    tmp_path: Path,
) -> None:
    instance = tmp_path / "instance"
    port = free_port()
    env = _env(instance)
    subprocess.run(
        [sys.executable, "-m", "broadcaster", "--instance", str(instance), "user", "add", "chu-tich",
         "--role", "approver", "--password-stdin"],
        input=PASSWORD + "\n", env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "broadcaster", "--instance", str(instance), "serve", "--port", str(port)],
        env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )  # fmt: skip
    log.close()
    try:
        ca = instance / "mosquitto" / "tls" / "ca.crt"
        wait_until(lambda: ca.exists() and (instance / "mosquitto" / "tls" / "web.crt").exists(), 60)
        pinned = ssl.create_default_context(cafile=str(ca))  # trusts the instance CA, nothing else
        jar = http.cookiejar.CookieJar()
        opener = _opener(pinned, jar)
        base = f"https://127.0.0.1:{port}"

        def health() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
            try:
                with opener.open(f"{base}/api/health", timeout=2) as answer:
                    return answer.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_until(health, timeout=60, interval=0.2, what="serve answers over https")
        page = opener.open(f"{base}/login", timeout=10).read().decode()
        token = _CSRF.search(page).group(1)  # type: ignore[union-attr]
        form = urllib.parse.urlencode({"username": "chu-tich", "password": PASSWORD, "csrf_token": token})
        opener.open(f"{base}/login", data=form.encode(), timeout=10).read()
        live = opener.open(f"{base}/live", timeout=10).read().decode()
        assert "Phát trực tiếp" in live and 'id="live-start"' in live
        # The session cookie is Secure over https (it is never sent over plain http).
        assert jar and all(cookie.secure for cookie in jar)
        # Plain http on the same port is not served; an unpinned client refuses the certificate.
        with pytest.raises((urllib.error.URLError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _opener(ssl.create_default_context()).open(f"{base}/api/health", timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0


def test_an_operators_certificate_is_used_as_given(tmp_path: Path) -> None:
    # An "operator's" certificate: any certificate and key; here one our CA machinery issues elsewhere.
    other = TlsMaterial(tmp_path / "other-ca", "127.0.0.1", listen="127.0.0.1", server_name="site")
    other.ensure()
    settings = load_settings(
        {
            "instance": tmp_path / "instance",
            "web": {
                "https": True,
                "tls_cert_file": other.server_cert_path,
                "tls_key_file": other.server_key_path,
            },
        },
        environ={},
    )
    files = web_tls_files(settings)
    assert (files.cert, files.key, files.ca) == (other.server_cert_path, other.server_key_path, None)
    assert not (tmp_path / "instance" / "mosquitto" / "tls" / "web.crt").exists()  # nothing issued

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    server = WebServer(app, "127.0.0.1", 0, tls=files).start()
    try:
        context = ssl.create_default_context(cafile=str(other.ca_cert_path))
        with urllib.request.urlopen(f"{server.url}/", context=context, timeout=5) as answer:
            assert answer.read() == b"ok"
    finally:
        server.stop()


def test_a_missing_or_half_given_certificate_is_refused_clearly(tmp_path: Path) -> None:
    half = load_settings(
        {"instance": tmp_path / "i1", "web": {"https": True, "tls_cert_file": tmp_path / "x.pem"}}, environ={}
    )
    with pytest.raises(WebTlsError, match="both web.tls_cert_file and web.tls_key_file"):
        web_tls_files(half)
    missing = load_settings(
        {
            "instance": tmp_path / "i2",
            "web": {"https": True, "tls_cert_file": tmp_path / "x.pem", "tls_key_file": tmp_path / "x.key"},
        },
        environ={},
    )
    with pytest.raises(WebTlsError, match="cannot read"):
        web_tls_files(missing)
    instance = tmp_path / "i3"
    done = subprocess.run(
        [sys.executable, "-m", "broadcaster", "--instance", str(instance), "serve", "--port", str(free_port())],
        env={**_env(instance), "BROADCASTER_WEB__TLS_CERT_FILE": str(tmp_path / "x.pem"),
             "BROADCASTER_WEB__TLS_KEY_FILE": str(tmp_path / "x.key")},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "error: cannot read" in done.stderr
