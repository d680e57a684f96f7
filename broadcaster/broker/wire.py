"""The few bytes of MQTT 3.1.1 the broker package speaks itself: a login probe, and a one-shot
client for the dynamic security plugin's control topic.

paho may only be imported in ``broadcaster/transport/mqtt.py``, and the Transport is the
controller's data link (it starts after the broker, reconnects on its own schedule, and adds the
topic prefix), so the broker package does not borrow it. ``mosquitto_ctrl`` would need one
process and one connection per command, with the admin password on its command line (visible in
``ps``). What is needed is small: CONNECT, SUBSCRIBE to the response topic, one PUBLISH (QoS 0)
carrying a whole batch of commands, read the response PUBLISH, DISCONNECT. That is written here
against the MQTT 3.1.1 specification, over the loopback listener only.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import ssl
import struct
from typing import Any

from broadcaster.broker.base import BrokerError

_CONNECT, _CONNACK, _PUBLISH, _SUBSCRIBE, _SUBACK, _DISCONNECT = 0x10, 0x20, 0x30, 0x82, 0x90, 0xE0
# Commands per control message: each is ~100 bytes; 500 keep a message far below the broker's
# packet limit and the plugin's reply quick.
_COMMANDS_PER_MESSAGE = 500


def _string(value: str) -> bytes:
    data = value.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + _remaining_length(len(body)) + body


def _connect_packet(client_id: str, username: str, password: str, keepalive: int) -> bytes:
    # Protocol level 4 (3.1.1); flags: user name, password, clean session.
    variable = _string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", keepalive)
    return _packet(_CONNECT, variable + _string(client_id) + _string(username) + _string(password))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise ConnectionError("the broker closed the connection")
        data += part
    return data


def _read_packet(sock: socket.socket) -> tuple[int, bytes]:
    first = _recv_exact(sock, 1)[0]
    length, shift = 0, 0
    while True:
        byte = _recv_exact(sock, 1)[0]
        length += (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 21:
            raise ConnectionError("malformed MQTT packet length")
    return first, _recv_exact(sock, length) if length else b""


def _open(
    host: str, port: int, timeout: float, ssl_context: ssl.SSLContext | None, server_hostname: str | None
) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    if ssl_context is None:
        return sock
    try:
        return ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
    except BaseException:
        sock.close()
        raise


def probe_login(
    host: str,
    port: int,
    username: str,
    password: str,
    timeout: float = 2.0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> int | None:
    """Send one MQTT 3.1.1 CONNECT; return the CONNACK return code (0 = accepted, 4/5 = refused)
    or None when the broker does not answer. With ``ssl_context`` the probe goes over TLS, and a
    TLS failure (untrusted or expired certificate, wrong name) raises :class:`ssl.SSLError`."""
    client_id = f"loa-probe-{secrets.token_hex(4)}"
    try:
        with _open(host, port, timeout, ssl_context, server_hostname) as sock:
            sock.sendall(_connect_packet(client_id, username, password, keepalive=5))
            try:
                first, body = _read_packet(sock)
            except ConnectionError:
                return None
            if first != _CONNACK or len(body) < 2:
                return None
            code = body[1]
            if code == 0:
                with contextlib.suppress(OSError):
                    sock.sendall(bytes([_DISCONNECT, 0]))  # no last will
            return code
    except ssl.SSLError:
        raise
    except OSError:
        return None


def dynsec_control(
    host: str, port: int, username: str, password: str, commands: list[dict[str, Any]], timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Send dynamic-security ``commands`` (in batches) and return the plugin's responses, one per
    command, in order. :class:`BrokerError` when the broker refuses the login or does not answer."""
    from broadcaster.broker.accounts import DYNSEC_CONTROL_TOPIC

    if not commands:
        return []
    response_topic = DYNSEC_CONTROL_TOPIC + "/response"
    client_id = f"loa-dynsec-{secrets.token_hex(4)}"
    responses: list[dict[str, Any]] = []
    try:
        with _open(host, port, timeout, None, None) as sock:
            sock.sendall(_connect_packet(client_id, username, password, keepalive=max(5, int(timeout) * 2)))
            first, body = _read_packet(sock)
            if first != _CONNACK or len(body) < 2 or body[1] != 0:
                code = body[1] if len(body) >= 2 else None
                raise BrokerError(f"the broker refused the dynamic-security login (CONNACK code {code})")
            sock.sendall(_packet(_SUBSCRIBE, struct.pack("!H", 1) + _string(response_topic) + b"\x00"))
            first, body = _read_packet(sock)
            if first != _SUBACK or body[2:3] == b"\x80":
                raise BrokerError("the broker refused the dynamic-security response topic")
            for start in range(0, len(commands), _COMMANDS_PER_MESSAGE):
                batch = commands[start : start + _COMMANDS_PER_MESSAGE]
                payload = json.dumps({"commands": batch}, ensure_ascii=False).encode("utf-8")
                sock.sendall(_packet(_PUBLISH, _string(DYNSEC_CONTROL_TOPIC) + payload))
                responses.extend(_await_response(sock, response_topic))
            with contextlib.suppress(OSError):
                sock.sendall(bytes([_DISCONNECT, 0]))
    except (OSError, ValueError) as exc:
        raise BrokerError(f"dynamic-security command failed: {exc}") from exc
    return responses


def _await_response(sock: socket.socket, topic: str) -> list[dict[str, Any]]:
    while True:
        first, body = _read_packet(sock)
        if first & 0xF0 != _PUBLISH:
            continue
        (length,) = struct.unpack("!H", body[:2])
        got = body[2 : 2 + length].decode("utf-8", "replace")
        rest = body[2 + length :]
        if (first >> 1) & 0x03:
            rest = rest[2:]  # QoS > 0 carries a packet id (the plugin answers with QoS 0)
        if got != topic:
            continue
        data = json.loads(rest.decode("utf-8"))
        out = data.get("responses") if isinstance(data, dict) else None
        if not isinstance(out, list):
            raise ValueError(f"unexpected dynamic-security response: {rest[:200]!r}")
        return out
