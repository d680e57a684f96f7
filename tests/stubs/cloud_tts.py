"""A local stand-in for the five cloud speech providers (FPT.AI, Viettel AI, Zalo AI, Google
Cloud, Microsoft Azure): one threaded HTTP server on a free loopback port.

It checks each request the way the provider documents it (method, path, auth header, content
type, body fields) and records what is wrong in ``problems`` (answering HTTP 400, as the provider
would); it answers like the provider, in the mode a test sets:

``ok``              audio (FPT and Zalo: a link, which answers 404 ``pending_polls`` times first)
``auth``            the provider's "wrong key" answer (echoing the key, to test redaction)
``quota``           the provider's "quota spent" answer
``rate_limit``      HTTP 429 (with Retry-After where the provider sends it)
``non_json``        an HTML error page where JSON or audio was expected
``missing_fields``  JSON without the audio or its link
``not_audio``       bytes that are not audio where the audio should be
``slow``            no answer until ``release`` is set (tests set it at teardown)
``server_error``    HTTP 500
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = (
    "ok",
    "auth",
    "quota",
    "rate_limit",
    "non_json",
    "missing_fields",
    "not_audio",
    "slow",
    "server_error",
)
PATHS = {
    "fpt": "/hmi/tts/v5",
    "viettel": "/tts/speech_synthesis",
    "zalo": "/v1/tts/synthesize",
    "google-cloud": "/v1/text:synthesize",
    "azure": "/cognitiveservices/v1",
}
NOT_AUDIO = b"<html><body>404 Not Found</body></html>"
HTML_ERROR = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
SSML_NS = "{http://www.w3.org/2001/10/synthesis}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in urllib.parse.parse_qs(self.body.decode("utf-8")).items()}


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, **headers: str) -> Reply:
        return cls(status, json.dumps(data, ensure_ascii=False).encode(), "application/json", dict(headers))


@dataclass
class CloudTtsStub:
    audio: bytes
    key: str = "test-key-0123456789"
    mode: str = "ok"
    pending_polls: int = 0  # audio links answer 404 this many times before the audio
    requests: list[Recorded] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _polls: dict[str, int] = field(default_factory=dict)

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> CloudTtsStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server API name
                stub._handle(self, "GET")

            def do_POST(self) -> None:  # http.server API name
                stub._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="cloud-tts-stub", daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def endpoint(self, provider: str) -> str:
        return self.url + PATHS[provider]

    def calls(self, provider: str) -> int:
        """Synthesis requests received for ``provider`` (audio-link fetches not included)."""
        with self.lock:
            return sum(1 for r in self.requests if r.path.split("?")[0] == PATHS[provider])

    def fetches(self, prefix: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.path.startswith(prefix))

    def last(self, provider: str) -> Recorded:
        with self.lock:
            return [r for r in self.requests if r.path.split("?")[0] == PATHS[provider]][-1]

    # --- dispatch -----------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        request = Recorded(method, handler.path, headers, body)
        with self.lock:
            self.requests.append(request)
        path = handler.path.split("?")[0]
        routes: dict[tuple[str, str], Callable[[Recorded], Reply]] = {
            ("POST", PATHS["fpt"]): self._fpt,
            ("POST", PATHS["viettel"]): self._viettel,
            ("POST", PATHS["zalo"]): self._zalo,
            ("POST", PATHS["google-cloud"]): self._google,
            ("POST", PATHS["azure"]): self._azure,
        }
        route = routes.get((method, path))
        if route is None and method == "GET" and path.startswith(("/fpt-audio/", "/zalo-audio/")):
            route = self._audio_link
        if route is None:
            self._problem(f"unexpected {method} {handler.path}")
            reply = Reply(404, b"no such endpoint", "text/plain")
        else:
            if self.mode == "slow" and method == "POST":
                self.release.wait(30)
                return
            reply = route(request)
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(reply.body)
        except OSError:  # the client gave up (a timeout test): nothing to answer
            pass

    def _problem(self, text: str) -> Reply:
        with self.lock:
            self.problems.append(text)
        return Reply(400, text.encode(), "text/plain")

    def _mp3(self) -> Reply:
        return Reply(200, NOT_AUDIO if self.mode == "not_audio" else self.audio, "audio/mpeg")

    def _link(self, prefix: str) -> str:
        with self.lock:
            number = len(self._polls) + 1
            self._polls[f"{prefix}{number}"] = 0
        return f"{self.url}{prefix}{number}"

    def _audio_link(self, request: Recorded) -> Reply:
        if "api-key" in request.headers or "apikey" in request.headers:
            return self._problem("the audio link was fetched with the API key")
        with self.lock:
            if request.path not in self._polls:
                return Reply(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
            self._polls[request.path] += 1
            polls = self._polls[request.path]
        if polls <= self.pending_polls:
            return Reply(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        return self._mp3()

    # --- providers ------------------------------------------------------------------------------

    def _common_errors(self) -> Reply | None:
        if self.mode == "non_json":
            return Reply(200, HTML_ERROR, "text/html")
        if self.mode == "server_error":
            return Reply(500, HTML_ERROR, "text/html")
        return None

    def _fpt(self, r: Recorded) -> Reply:
        if r.headers.get("api-key") != self.key or self.mode == "auth":
            return Reply.json({"error": 401, "message": f"Invalid API key: {r.headers.get('api-key')}"}, 401)
        if not r.headers.get("voice") or r.headers.get("format") != "mp3":
            return self._problem(f"fpt: voice/format headers wrong: {r.headers}")
        if r.headers.get("speed") not in {str(n) for n in range(-3, 4)}:
            return self._problem(f"fpt: speed {r.headers.get('speed')!r}")
        try:
            text = r.body.decode("utf-8")
        except UnicodeDecodeError:
            return self._problem("fpt: body is not UTF-8")
        if not 3 <= len(text) <= 5000:
            return self._problem(f"fpt: body of {len(text)} characters")
        if self.mode == "quota":
            return Reply.json(
                {"error": 1, "message": "Out of quota: the character limit of your plan is exceeded"}
            )
        if self.mode == "rate_limit":
            return Reply.json({"message": "API rate limit exceeded"}, 429, **{"Retry-After": "7"})
        if (err := self._common_errors()) is not None:
            return err
        if self.mode == "missing_fields":
            return Reply.json({"error": 0, "message": "ok", "request_id": "r-1"})
        return Reply.json(
            {
                "async": self._link("/fpt-audio/"),
                "error": 0,
                "message": "The content will be returned after a few seconds under the async link.",
                "request_id": "4b5b1528-5847-e83a",
            }
        )

    def _viettel(self, r: Recorded) -> Reply:
        if not r.headers.get("content-type", "").startswith("application/json"):
            return self._problem(f"viettel: content type {r.headers.get('content-type')!r}")
        try:
            data = r.json()
        except ValueError:
            return self._problem("viettel: body is not JSON")
        if data.get("token") != self.key or self.mode == "auth":
            return Reply.json({"code": 401, "message": f"Token invalid: {data.get('token')}"}, 401)
        wrong = [
            k
            for k, ok in (
                ("text", isinstance(data.get("text"), str) and data["text"].strip()),
                ("voice", isinstance(data.get("voice"), str) and data["voice"]),
                ("speed", isinstance(data.get("speed"), int | float) and 0.7 <= data["speed"] <= 1.3),
                ("tts_return_option", data.get("tts_return_option") == 3),
                ("without_filter", isinstance(data.get("without_filter"), bool)),
            )
            if not ok
        ]
        if wrong:
            return self._problem(f"viettel: fields wrong: {wrong}")
        if self.mode == "quota":
            return Reply.json({"code": 403, "message": "Quota exceeded for this token"}, 403)
        if self.mode == "rate_limit":
            return Reply.json({"code": 429, "message": "Too many requests"}, 429)
        if (err := self._common_errors()) is not None:
            return err
        if self.mode == "missing_fields":
            return Reply.json({"code": 200, "data": None})
        return self._mp3()

    def _zalo(self, r: Recorded) -> Reply:
        if r.headers.get("apikey") != self.key or self.mode == "auth":
            return Reply.json(
                {"error_code": 401, "error_message": f"Wrong apikey {r.headers.get('apikey')}", "data": []}
            )
        if not r.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return self._problem(f"zalo: content type {r.headers.get('content-type')!r}")
        form = r.form()
        speed = float(form.get("speed", "1"))
        if not form.get("input") or form.get("speaker_id") not in set("123456") or not 0.8 <= speed <= 1.2:
            return self._problem(f"zalo: form wrong: {form}")
        if form.get("encode_type") != "1":
            return self._problem(f"zalo: encode_type {form.get('encode_type')!r}, not mp3")
        if len(form["input"]) > 2000:
            return Reply.json(
                {"error_code": 155, "error_message": "Your input exceeds the allowed limit", "data": []}
            )
        if self.mode == "quota":
            return Reply.json(
                {"error_code": -10, "error_message": "Quota exceeded: daily character limit", "data": []}
            )
        if self.mode == "rate_limit":
            return Reply.json({"error_code": 429, "error_message": "Too many requests"}, 429)
        if (err := self._common_errors()) is not None:
            return err
        if self.mode == "missing_fields":
            return Reply.json({"error_code": 0, "error_message": "Successful.", "data": []})
        return Reply.json(
            {"error_code": 0, "error_message": "Successful.", "data": {"url": self._link("/zalo-audio/")}}
        )

    def _google(self, r: Recorded) -> Reply:
        key = r.headers.get("x-goog-api-key")
        bearer = r.headers.get("authorization", "")
        if (key != self.key and bearer != f"Bearer {self.key}") or self.mode == "auth":
            error = {"code": 400, "message": f"API key not valid. Please pass a valid API key. ({key})",
                     "status": "INVALID_ARGUMENT"}  # fmt: skip
            return Reply.json({"error": error}, 400)
        if not r.headers.get("content-type", "").startswith("application/json"):
            return self._problem("google: content type")
        data = r.json()
        voice, audio = data.get("voice") or {}, data.get("audioConfig") or {}
        source = data.get("input") or {}
        if sorted(source) not in (["text"], ["ssml"]):  # SynthesisInput is a oneof: text or ssml
            return self._problem(f"google: input must hold exactly one of text, ssml: {source}")
        if "ssml" in source and (trouble := _ssml_trouble(source["ssml"], "")):
            return self._problem(f"google: {trouble}")
        if (
            not (source.get("text") or source.get("ssml"))
            or voice.get("languageCode") != "vi-VN"
            or not voice.get("name")
        ):
            return self._problem(f"google: input/voice wrong: {data}")
        if audio.get("audioEncoding") != "MP3":
            return self._problem(f"google: audioConfig {audio}")
        if self.mode == "quota":
            error = {"code": 429, "status": "RESOURCE_EXHAUSTED",
                     "message": "Quota exceeded for quota metric 'All requests' and limit 'Characters per day'"}  # fmt: skip
            return Reply.json({"error": error}, 429)
        if self.mode == "rate_limit":
            error = {
                "code": 429,
                "status": "RESOURCE_EXHAUSTED",
                "message": "Rate limit exceeded, retry later",
            }
            return Reply.json({"error": error}, 429)
        if (err := self._common_errors()) is not None:
            return err
        if self.mode == "missing_fields":
            return Reply.json({})
        content = NOT_AUDIO if self.mode == "not_audio" else self.audio
        return Reply.json({"audioContent": base64.b64encode(content).decode("ascii")})

    def _azure(self, r: Recorded) -> Reply:
        if r.headers.get("ocp-apim-subscription-key") != self.key or self.mode == "auth":
            return Reply(401, b"", "text/plain")
        if r.headers.get("content-type") != "application/ssml+xml":
            return self._problem(f"azure: content type {r.headers.get('content-type')!r}")
        if r.headers.get("x-microsoft-outputformat") != "audio-24khz-48kbitrate-mono-mp3":
            return self._problem(f"azure: output format {r.headers.get('x-microsoft-outputformat')!r}")
        if not r.headers.get("user-agent"):
            return self._problem("azure: no User-Agent")
        try:
            root = ET.fromstring(r.body.decode("utf-8"))
        except (ET.ParseError, UnicodeDecodeError) as exc:
            return self._problem(f"azure: SSML does not parse: {exc}")
        if trouble := _ssml_trouble(r.body.decode("utf-8"), SSML_NS):
            return self._problem(f"azure: {trouble}")
        voice = root.find(f"{SSML_NS}voice")
        if root.tag != f"{SSML_NS}speak" or root.get(XML_LANG) != "vi-VN" or voice is None:
            return self._problem("azure: SSML root/lang/voice wrong")
        if (
            voice.get("name") not in ("vi-VN-HoaiMyNeural", "vi-VN-NamMinhNeural")
            or not "".join(voice.itertext()).strip()
        ):
            return self._problem(f"azure: voice {voice.get('name')!r} or empty text")
        if self.mode == "quota":
            return Reply.json(
                {"error": {"code": "403", "message": "Out of call volume quota for the month"}}, 403
            )
        if self.mode == "rate_limit":
            return Reply(429, b"", "text/plain", {"Retry-After": "5"})
        if (err := self._common_errors()) is not None:
            return err
        if self.mode == "missing_fields":
            return Reply(200, b"", "audio/mpeg")
        return self._mp3()


def _ssml_trouble(document: str, ns: str) -> str | None:
    """What is wrong with an SSML document (root ``<speak>`` in namespace ``ns``, each
    ``<phoneme>`` with ``alphabet="ipa"``, a non-empty ``ph`` and the words it says), or None."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        return f"SSML does not parse: {exc}"
    if root.tag != f"{ns}speak":
        return f"SSML root is {root.tag!r}, not speak"
    for phoneme in root.iter(f"{ns}phoneme"):
        if phoneme.get("alphabet") != "ipa" or not (phoneme.get("ph") or "").strip():
            return f"phoneme without alphabet=ipa or ph: {phoneme.attrib}"
        if not "".join(phoneme.itertext()).strip() or len(phoneme):
            return "phoneme must hold the plain words it pronounces"
    return None


__all__ = ["MODES", "PATHS", "CloudTtsStub", "Recorded"]
