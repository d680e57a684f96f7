"""The agent's MQTT link: the only module of the agent that imports aiomqtt/paho.

One :class:`Link` is one node's persistent MQTT 5 session. Many links share one asyncio event
loop (the simulator runs thousands of them in one process). A link

* connects with ``clean_start`` false and a session expiry interval, so the broker keeps the
  node's subscriptions and queued QoS 1 commands while it is away;
* sets a retained last will, and publishes a retained birth message on every connect;
* renews every wanted subscription on each (re)connect;
* reconnects after any disconnect with exponential backoff and jitter, so that after a broker
  restart thousands of nodes come back without a human and without a thundering herd;
* never drops a publish silently while disconnected: publishes wait in an outbox (periodic
  telemetry is coalesced to the latest value) and go out in order after the reconnect;
* checks the MQTT 5 PUBACK reason code, so a publish that the broker's ACL refuses is reported
  (under MQTT 3.1.1 mosquitto acknowledges a denied publish as a success);
* speaks TLS with the context it is given (``speakers.tls``: pinned CA, host name checked) and
  says in plain words why a connection failed (certificate, login, network);
* can simulate a slow link (added latency in both directions) and abrupt drops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from speakers.mqtturl import MqttUrl, MqttUrlError, parse_mqtt_url
from speakers.tls import client_context, explain_connect_error

_LOGGER = logging.getLogger(__name__)

# The outbox holds what a node could not send while offline. Receipts are small; 1,000 is
# hours of activity. Beyond that the oldest are dropped with a warning.
OUTBOX_LIMIT = 1000


@dataclass(frozen=True)
class Incoming:
    """A received message; ``expiry_s`` is the remaining MQTT 5 message expiry, if any."""

    topic: str
    payload: bytes
    retain: bool = False
    expiry_s: float | None = None
    received: float = field(default_factory=time.monotonic)


@dataclass
class Outgoing:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    expiry_s: int | None = None
    coalesce: str | None = None
    queued: float = field(default_factory=time.monotonic)
    on_send: Callable[[], None] | None = None  # called just before the bytes go out
    on_done: Callable[[], None] | None = None  # called once the broker acknowledged it (any reason code)

    def properties(self) -> Properties | None:
        if self.expiry_s is None:
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = max(1, int(self.expiry_s))
        return props


class PublishRefused(Exception):
    """The broker answered a publish with a failure reason code (e.g. not authorized)."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"broker refused publish to {topic}: {reason}")
        self.topic = topic
        self.reason = reason


class _Client(aiomqtt.Client):
    """aiomqtt client that also reports ``session_present`` and PUBACK reason codes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session_present = False
        self.connect_error: BaseException | None = None  # what paho raised (aiomqtt keeps only text)
        self._acks: dict[int, asyncio.Future[ReasonCode | None]] = {}
        context = kwargs.get("tls_context")
        if context is not None:
            self._client._ssl_wrap_socket = self._tls_wrapper(context)  # type: ignore[method-assign]

    def _tls_wrapper(self, context: ssl.SSLContext) -> Callable[[socket.socket], ssl.SSLSocket]:
        """paho's TLS wrapping, but closing the socket when the handshake fails (paho leaves it
        open: one leaked socket per refused attempt, for as long as the node retries). The
        context checks the host name itself."""
        client = self._client
        host = self._hostname

        def wrap(tcp_sock: socket.socket) -> ssl.SSLSocket:
            ssl_sock = context.wrap_socket(tcp_sock, server_hostname=host, do_handshake_on_connect=False)
            try:
                ssl_sock.settimeout(client._connect_timeout)
                ssl_sock.do_handshake()
            except BaseException:
                ssl_sock.close()
                raise
            return ssl_sock

        return wrap

    def _client_connect(self) -> None:
        try:
            super()._client_connect()
        except Exception as exc:
            self.connect_error = exc
            raise

    @property
    def paho(self) -> paho.Client:
        return self._client

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None
    ) -> None:
        with contextlib.suppress(AttributeError):
            self.session_present = bool(flags.session_present)
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any = None
    ) -> None:
        if mid not in self._pending_subscribes:
            return  # the caller stopped waiting (timeout under load); nothing to report
        super()._on_subscribe(client, userdata, mid, reason_codes, properties)

    def _on_unsubscribe(
        self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any = None
    ) -> None:
        if mid not in self._pending_unsubscribes:
            return
        super()._on_unsubscribe(client, userdata, mid, reason_codes, properties)

    def unsubscribe_nowait(self, topic_filter: str) -> None:
        """UNSUBSCRIBE without waiting for the broker's acknowledgement."""
        self._client.unsubscribe(topic_filter)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(reason_code)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_acked(self, out: Outgoing) -> ReasonCode | None:
        """Publish and wait for the broker's acknowledgement; return its reason code (MQTT 5).

        There is no timeout: a busy broker may take long, and giving up would either lose the
        message or send it twice. A dead connection is noticed by the keepalive, and then this
        raises MqttError (the caller keeps the message and sends it after the reconnect)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ReasonCode | None] = loop.create_future()
        info = self._client.publish(out.topic, out.payload, out.qos, out.retain, out.properties())
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if out.qos == 0 or info.is_published():
            return None
        self._acks[info.mid] = fut
        try:
            await asyncio.wait((fut, self._disconnected), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._acks.pop(info.mid, None)
        if fut.done():
            return fut.result()
        raise aiomqtt.MqttError(f"connection lost before the broker acknowledged {out.topic}")

    def consume_disconnect(self) -> None:
        """Mark a disconnect error as seen (asyncio logs unretrieved future exceptions)."""
        fut = self._disconnected
        if fut.done() and not fut.cancelled():
            fut.exception()

    def abort(self) -> None:
        """Cut the TCP connection without an MQTT DISCONNECT, so the broker sends the last will."""
        sock = self._client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


MessageHandler = Callable[[Incoming], Awaitable[None] | None]
ConnectHandler = Callable[[bool], Awaitable[None]]


class Link:
    """One node's self-healing MQTT 5 session (see the module docstring).

    ``on_message`` is called for each incoming message in arrival order (after the simulated
    latency); it must not block. ``on_connect(session_present)`` runs after the subscriptions
    are renewed and the birth message is out, before queued publishes are sent.
    """

    def __init__(
        self,
        client_id: str,
        url: MqttUrl,
        *,
        on_message: MessageHandler,
        on_connect: ConnectHandler | None = None,
        will: Outgoing | None = None,
        birth: Callable[[], Outgoing] | None = None,
        keepalive_s: int = 30,
        session_expiry_s: int = 86400,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        ack_timeout_s: float = 30.0,
        latency_s: float = 0.0,
        connect_gate: asyncio.Semaphore | None = None,
        outbox_limit: int = OUTBOX_LIMIT,
        tls_context: ssl.SSLContext | None = None,
        clean_start: bool = False,
        max_attempts: int | None = None,
        on_disconnect: Callable[[], None] | None = None,
    ) -> None:
        self.client_id = client_id
        self.outbox_limit = outbox_limit
        self.url = url
        self.on_message = on_message
        self.on_connect = on_connect
        self.will = will
        self.birth = birth
        self.keepalive_s = keepalive_s
        self.session_expiry_s = session_expiry_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.connect_timeout_s = connect_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.latency_s = latency_s
        self.connect_gate = connect_gate
        # mqtts:// without a context of the caller's: the system's CAs, TLS 1.2+, host name checked.
        self.tls_context = tls_context if tls_context is not None or not url.tls else client_context(None)
        self.clean_start = clean_start
        self.max_attempts = max_attempts  # None: reconnect for ever; n: give up after n failed attempts
        self.on_disconnect = on_disconnect
        self.connected = asyncio.Event()
        self.down_since: float | None = time.monotonic()  # monotonic; None while connected
        self.attempts = 0  # connection attempts that failed
        self.connections = 0  # successful connects; reconnects = connections - 1
        self.refused: list[PublishRefused] = []
        self.last_error: str | None = None
        self._filters: dict[str, int] = {}
        self._outbox: collections.deque[Outgoing] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._client: _Client | None = None
        self._last_client: _Client | None = None
        self._closing = False
        self._killed = False
        self._last_delivery = 0.0
        self._pending_deliveries: collections.deque[asyncio.TimerHandle] = collections.deque()

    # ------------------------------------------------------------------ subscriptions

    @property
    def reconnects(self) -> int:
        return max(0, self.connections - 1)

    def want(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe from the next connect on (for the subscriptions known before the first)."""
        self._filters[topic_filter] = qos

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now when connected (waits for the SUBACK) and after every reconnect."""
        self._filters[topic_filter] = qos
        client = self._client
        if client is not None and self.connected.is_set():
            try:
                await client.subscribe(topic_filter, qos, timeout=self.ack_timeout_s)
            except aiomqtt.MqttError as exc:
                _LOGGER.debug("%s: subscribe %s deferred to reconnect: %s", self.client_id, topic_filter, exc)

    async def unsubscribe(self, topic_filter: str) -> None:
        """Stop receiving ``topic_filter`` (now, and it is not renewed at reconnects). Does not
        wait for the broker's acknowledgement: a late one changes nothing."""
        self._filters.pop(topic_filter, None)
        client = self._client
        if client is not None and self.connected.is_set():
            client.unsubscribe_nowait(topic_filter)

    def wants(self, topic_filter: str) -> bool:
        return topic_filter in self._filters

    # ------------------------------------------------------------------------ publish

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
        coalesce: str | None = None,
        on_send: Callable[[], None] | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        """Queue a publish; it goes out in order as soon as the link is up.

        A message with a ``coalesce`` key replaces a queued one with the same key (telemetry:
        only the latest value matters). ``on_done`` runs once the broker acknowledged it."""
        out = Outgoing(topic, payload, qos, retain, expiry_s, coalesce, on_send=on_send, on_done=on_done)
        if coalesce is not None:
            for i, queued in enumerate(self._outbox):
                if queued.coalesce == coalesce:
                    del self._outbox[i]
                    break
        if len(self._outbox) >= self.outbox_limit:
            dropped = self._outbox.popleft()
            _LOGGER.warning("%s: outbox full, dropping oldest message to %s", self.client_id, dropped.topic)
        self._outbox.append(out)
        self._outbox_ready.set()

    @property
    def outbox_size(self) -> int:
        return len(self._outbox)

    # ----------------------------------------------------------------------- lifecycle

    def _make_client(self) -> _Client:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        will = None
        if self.will is not None:
            will = aiomqtt.Will(
                self.will.topic, self.will.payload, self.will.qos, self.will.retain, self.will.properties()
            )
        kwargs: dict[str, Any] = {}
        if self.url.tls:
            kwargs["tls_context"] = self.tls_context
        return _Client(
            self.url.host,
            self.url.port,
            username=self.url.username,
            password=self.url.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will,
            clean_start=self.clean_start,
            keepalive=self.keepalive_s,
            timeout=self.connect_timeout_s,
            properties=props,
            max_inflight_messages=100,
            logger=_LOGGER,
            **kwargs,
        )

    async def run(self) -> None:
        """Stay connected until :meth:`close` or :meth:`kill`; reconnect after anything else
        (or give up after ``max_attempts`` failed attempts in a row)."""
        attempt = 0
        while not (self._closing or self._killed):
            before = self.connections
            try:
                await self._connect_and_serve()
            except aiomqtt.MqttError as exc:
                was_up = self.connections > before
                if was_up:
                    attempt = 0  # it was up: a fresh streak of failures starts now
                    self.last_error = f"mqtt: connection lost: {exc}"
                else:
                    self.attempts += 1
                    self.last_error = self._explain(exc)
                if not (self._closing or self._killed):
                    # Say it loudly at the first failure of a streak and now and then after. A
                    # refused certificate or login does not mend itself: that is an error.
                    # (self.attempts counts the failed connects since the last success, so the
                    # first refusal after a lost connection is loud too: a cluster cut off on
                    # the controller says why at once.)
                    loud = was_up or self.attempts % 10 == 1
                    refused = not was_up and self.last_error.startswith(("TLS", "login"))
                    level = (logging.ERROR if refused else logging.WARNING) if loud else logging.DEBUG
                    _LOGGER.log(
                        level,
                        "%s: cannot connect to %s: %s" if not was_up else "%s: MQTT link to %s: %s",
                        self.client_id,
                        self.url.redacted(),
                        self.last_error,
                    )
            except (OSError, RuntimeError, ValueError) as exc:  # never let the link die
                self.last_error = f"mqtt: {exc!r}"
                _LOGGER.exception("%s: unexpected MQTT failure", self.client_id)
            finally:
                self._went_down()
                self._last_client = None  # only kept to explain a failed connect
            if self._closing or self._killed:
                break
            if self.max_attempts is not None and self.attempts >= self.max_attempts:
                return
            # Exponential backoff with jitter: a broker restart must not bring thousands of
            # nodes back in the same millisecond.
            cap = min(self.reconnect_max_s, self.reconnect_min_s * (2**attempt))
            attempt = min(attempt + 1, 30)
            await asyncio.sleep(random.uniform(cap / 2, cap))

    def _explain(self, exc: aiomqtt.MqttError) -> str:
        """Plain words for a failed connect (the TLS or socket error paho raised, or CONNACK)."""
        try:
            client = self._last_client
            cause = client.connect_error if client is not None and client.connect_error else exc
            rc = getattr(exc, "rc", None) if isinstance(exc, MqttConnectError) else None
            code = getattr(rc, "value", rc)
            return explain_connect_error(
                cause, self.url.host, self.url.port, code if isinstance(code, int) else None
            )
        except Exception:  # never let the explanation break the reconnect loop
            _LOGGER.exception("%s: cannot explain %r", self.client_id, exc)
            return f"mqtt: {exc}"

    def _went_down(self) -> None:
        was_up = self.down_since is None
        self.connected.clear()
        self._client = None
        if was_up:
            self.down_since = time.monotonic()
            if self.on_disconnect is not None:
                try:
                    self.on_disconnect()
                except Exception:  # a callback bug must not kill the link
                    _LOGGER.exception("%s: on_disconnect failed", self.client_id)

    async def _connect_and_serve(self) -> None:
        client = self._make_client()
        self._last_client = client
        gate = self.connect_gate or contextlib.nullcontext()
        async with gate:
            await client.__aenter__()
        try:
            self._client = client
            self.connections += 1
            self.attempts = 0
            if self._filters:
                await client.subscribe([(f, q) for f, q in self._filters.items()], timeout=self.ack_timeout_s)
            if self.birth is not None:
                await self._send(client, self.birth())
            self.down_since = None
            self.last_error = None
            self.connected.set()
            if self.on_connect is not None:
                await self.on_connect(client.session_present)
            sender = asyncio.create_task(self._send_loop(client), name=f"{self.client_id}-sender")

            def sender_ended(task: asyncio.Task[None]) -> None:
                # The sender only ends with the connection; if it died of anything else, drop the
                # connection so that the reconnect starts a fresh one (and nothing stays queued).
                if not task.cancelled() and task.exception() is not None and self._client is client:
                    if not (self._closing or self._killed):
                        _LOGGER.warning(
                            "%s: sender stopped (%s); reconnecting", self.client_id, task.exception()
                        )
                    client.abort()

            sender.add_done_callback(sender_ended)
            try:
                async for message in client.messages:
                    self._deliver(message)
                if not self._closing:
                    raise aiomqtt.MqttError("message stream ended")
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await sender
        except BaseException:
            # Ended by anything but close() (a bug, a cancelled task): no clean DISCONNECT, so
            # the broker publishes the will and nobody believes the node is still online.
            if not self._closing:
                client.abort()
            raise
        finally:
            self.connected.clear()
            if self._killed:
                client.abort()
            with contextlib.suppress(aiomqtt.MqttError, OSError, RuntimeError):
                await client.__aexit__(None, None, None)
            client.consume_disconnect()

    def _deliver(self, message: aiomqtt.Message) -> None:
        expiry = None
        props = message.properties
        if props is not None and hasattr(props, "MessageExpiryInterval"):
            expiry = float(props.MessageExpiryInterval)
        payload = (
            message.payload if isinstance(message.payload, bytes) else bytes(str(message.payload), "utf-8")
        )
        incoming = Incoming(str(message.topic), payload, bool(message.retain), expiry)
        if self.latency_s <= 0:
            self._dispatch(incoming)
            return
        # Simulated slow link: every message is handed over latency_s later, in order.
        loop = asyncio.get_running_loop()
        when = max(loop.time() + self.latency_s, self._last_delivery + 1e-6)
        self._last_delivery = when
        self._pending_deliveries.append(loop.call_at(when, self._dispatch_delayed, incoming))

    def _dispatch_delayed(self, incoming: Incoming) -> None:
        if self._pending_deliveries:
            self._pending_deliveries.popleft()  # handles fire in order: `when` only grows
        if not self._killed:
            self._dispatch(incoming)

    def _dispatch(self, incoming: Incoming) -> None:
        try:
            result = self.on_message(incoming)
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(result)
                task.add_done_callback(_log_task_error)
        except Exception:  # a handler bug must not kill the connection
            _LOGGER.exception("%s: message handler failed for %s", self.client_id, incoming.topic)

    async def _send(self, client: _Client, out: Outgoing) -> None:
        if out.on_send is not None:
            out.on_send()  # the moment the node puts it on the (possibly slow) wire
        if self.latency_s > 0:
            delay = out.queued + self.latency_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        reason = await client.publish_acked(out)
        if reason is not None and reason.is_failure:
            refused = PublishRefused(out.topic, str(reason))
            self.refused.append(refused)
            del self.refused[:-20]
            self.last_error = str(refused)
            _LOGGER.error("%s: %s", self.client_id, refused)
        if out.on_done is not None:
            try:
                out.on_done()
            except Exception:
                _LOGGER.exception("%s: on_done of a publish to %s failed", self.client_id, out.topic)

    async def _send_loop(self, client: _Client) -> None:
        while True:
            while not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            out = self._outbox[0]
            await self._send(client, out)  # raises on a broken link: the message stays queued
            if self._outbox and self._outbox[0] is out:
                self._outbox.popleft()

    async def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (or ``timeout``); True when everything went out."""
        deadline = time.monotonic() + timeout
        while self._outbox and time.monotonic() < deadline and self.connected.is_set():
            await asyncio.sleep(0.01)
        return not self._outbox

    async def close(self, final: Outgoing | None = None, timeout: float = 5.0) -> None:
        """Clean shutdown: send what is queued, then ``final`` (e.g. status offline), then DISCONNECT."""
        client = self._client
        if client is not None and self.connected.is_set():
            await self.flush(timeout)
            if final is not None:
                with contextlib.suppress(aiomqtt.MqttError, PublishRefused):
                    await self._send(client, final)
        self._closing = True
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, OSError, RuntimeError):
                await client.__aexit__(None, None, None)

    def drop(self) -> None:
        """Cut the connection abruptly (network failure); the link reconnects by itself."""
        client = self._client
        if client is not None:
            client.abort()

    def kill(self) -> None:
        """Cut the connection abruptly and stay down (power cut): the broker sends the will."""
        self._killed = True
        for handle in self._pending_deliveries:
            handle.cancel()
        self._pending_deliveries.clear()
        client = self._client
        if client is not None:
            client.abort()


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        _LOGGER.error("message handler failed: %r", exc, exc_info=exc)


__all__ = [
    "Incoming",
    "Link",
    "MqttUrl",
    "MqttUrlError",
    "Outgoing",
    "PublishRefused",
    "parse_mqtt_url",
]
