"""Command line of the controller: parses arguments, builds services, nothing else.

broadcaster [--instance DIR] [--config FILE] normalize "TEXT" | --stdin
broadcaster [--instance DIR] tts "TEXT" -o out.mp3 [--engine E] [--voice V] [--repeat N]
broadcaster [--instance DIR] serve [--demo] [--host H] [--port P] [--mqtt-url URL] [--db URL]
broadcaster [--instance DIR] settings [--reference]
broadcaster [--instance DIR] token create NAME | list | revoke NAME
broadcaster [--instance DIR] user add USERNAME --role admin|editor|approver [--password-stdin]
broadcaster [--instance DIR] broker export DIR
broadcaster [--instance DIR] speaker enroll ID --zone ZONE [--name NAME] -o agent.yaml
"""

from __future__ import annotations

import argparse
import getpass
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from broadcaster.settings import Settings, SettingsError, load_settings

_LOGGER = logging.getLogger("broadcaster")


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    base = {"instance": args.instance}
    return load_settings({**base, **overrides}, config_file=args.config)


def cmd_normalize(args: argparse.Namespace) -> int:
    from broadcaster.textnorm import NormalizationError, Normalizer

    settings = _settings(args)
    normalizer = Normalizer.from_config(settings.textnorm)
    if args.stdin:
        # One spoken line per input line, blank stays blank, in one process for batch use.
        for line in sys.stdin:
            line = line.rstrip("\n")
            try:
                print(normalizer.normalize(line) if line.strip() else "", flush=False)
            except NormalizationError as exc:
                print("", flush=False)
                print(f"error: {exc}", file=sys.stderr)
        sys.stdout.flush()
        return 0
    if args.text is None:
        print("error: give TEXT or --stdin", file=sys.stderr)
        return 2
    try:
        print(normalizer.normalize(args.text))
    except NormalizationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_tts(args: argparse.Namespace) -> int:
    from broadcaster.speech import SpeechError, SpeechService

    settings = _settings(args)
    settings.ensure_instance()
    speech = SpeechService.from_settings(settings)
    try:
        result = speech.render(
            args.text, engine=args.engine, voice=args.voice, repeat=args.repeat, chime=not args.no_chime
        )
    except SpeechError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result.copy_to(args.output)
    print(f"engine: {result.engine}")
    print(f"voice: {result.voice}")
    print(f"duration: {result.duration_s:.2f} s")
    print(f"loudness: {result.loudness_lufs:.1f} LUFS")
    print(f"peak: {result.true_peak_dbtp:.1f} dBTP")
    print(f"cache: {'hit' if result.cache_hit else 'miss'}")
    print(f"key: {result.key}")
    print(f"output: {args.output}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import waitress

    from broadcaster.alerts import AlertsConfigError
    from broadcaster.broker import BrokerError
    from broadcaster.demo import Demo
    from broadcaster.scheduling.lock import SchedulerLockedError
    from broadcaster.services import build_services
    from broadcaster.transport import TransportError
    from broadcaster.web import create_app, shutdown_app

    settings = _settings(
        args, host=args.host, port=args.port, mqtt_url=args.mqtt_url, db=args.db, demo=args.demo or None
    )
    settings.ensure_instance()
    try:
        services = build_services(settings)
    except AlertsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    app = create_app(settings, services)
    demo = Demo(services) if settings.demo else None
    # SIGTERM (systemd, docker stop) must stop the managed broker and the workers too.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        if demo is not None:
            demo.prepare()  # the demo clusters' accounts exist before the managed broker starts
        services.start()
    except (BrokerError, SchedulerLockedError, TransportError) as exc:  # start() already stopped what ran
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        if demo is not None:
            demo.start()
        print(f"Loa xã: http://{settings.host}:{settings.port}/", flush=True)
        waitress.serve(app, host=settings.host, port=settings.port, threads=8, ident="loa-xa")
    except KeyboardInterrupt:
        pass
    finally:
        if demo is not None:
            demo.stop()
        shutdown_app(app)  # the web workers first: their jobs use the services
        services.stop()
    return 0


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _token_sessions(args: argparse.Namespace) -> Any:
    from broadcaster.services import open_database

    settings = _settings(args)
    settings.ensure_instance()
    return open_database(settings)


def cmd_token(args: argparse.Namespace) -> int:
    from broadcaster.web.tokens import TokenError, create_token

    sessions = _token_sessions(args)
    try:
        token = create_token(sessions, args.name)
    except TokenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    """One line per token: name, created, last used, state. Never a secret (only hashes are kept)."""
    from broadcaster.web.tokens import list_tokens

    tokens = list_tokens(_token_sessions(args))
    if not tokens:
        print("no API tokens (create one with: broadcaster token create NAME)")
        return 0
    rows = [("NAME", "CREATED", "LAST USED", "STATE")]
    rows += [
        (t["name"], _short_time(t["created"]), _short_time(t["last_used"]) or "never",
         "revoked" if t["revoked"] else "active")
        for t in tokens
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        print("  ".join([*cells, row[3]]))
    return 0


def _short_time(value: str | None) -> str:
    """ISO time to the second, in UTC as stored ("2026-03-15 07:30:05")."""
    return (value or "")[:19].replace("T", " ")


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from broadcaster.web.tokens import TokenError, revoke_token

    try:
        revoke_token(_token_sessions(args), args.name)
    except TokenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"token {args.name} revoked")
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    from broadcaster.services import open_database
    from broadcaster.web.users import UserError, add_user

    settings = _settings(args)
    settings.ensure_instance()
    sessions = open_database(settings)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Mật khẩu: ")
    try:
        add_user(sessions, args.username, password, args.role, display_name=args.name or args.username)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"user {args.username} ({args.role}) created")
    return 0


def cmd_broker_export(args: argparse.Namespace) -> int:
    from broadcaster.broker import BrokerError
    from broadcaster.broker.export import export_broker_files
    from broadcaster.fleet.registry import Registry
    from broadcaster.services import CONTROLLER_USER, open_database

    settings = _settings(args)
    settings.ensure_instance()
    try:
        result = export_broker_files(
            settings, Registry(open_database(settings)), args.directory, CONTROLLER_USER
        )
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{result.clusters} cluster(s) exported to {result.directory}: passwd, acl, loa-xa.conf, README.txt"
    )
    if result.generated_password is not None:
        print(
            f"controller account '{result.controller_user}': password in {result.directory / 'controller.secret'}"
        )
    return 0


def cmd_speaker_enroll(args: argparse.Namespace) -> int:
    """Create or update the cluster, give it a new password and write its agent.yaml (0600)."""
    from broadcaster.fleet.enroll import EnrollError, enroll
    from broadcaster.fleet.registry import Registry, RegistryError
    from broadcaster.services import open_database

    settings = _settings(args)
    settings.ensure_instance()
    try:
        result = enroll(
            Registry(open_database(settings)), settings, args.speaker_id, zone=args.zone, name=args.name
        )
    except (EnrollError, RegistryError) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    text = result.bundle.to_yaml()
    if str(args.output) == "-":
        sys.stdout.write(text)
    else:
        _write_private(args.output, text)
    bundle = result.bundle
    where = "stdout" if str(args.output) == "-" else str(args.output)
    print(
        f"cluster {bundle.id} ({'created' if result.created else 'new password'}, zone {bundle.zone or '-'}): "
        f"{where} connects to {bundle.mqtt_url}"
        + (" with the pinned CA" if bundle.ca_pem else " (the system's CAs)"),
        file=sys.stderr,
    )
    if not result.enabled:
        print(
            f"warning: cluster {bundle.id} is disabled: the broker refuses it until it is enabled",
            file=sys.stderr,
        )
    return 0


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (it holds a password)."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def cmd_settings(args: argparse.Namespace) -> int:
    from broadcaster.settings import reference_markdown

    if args.reference:
        print(reference_markdown(), end="")
        return 0
    print(_settings(args).model_dump_json(indent=2, exclude={"secret_key"}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broadcaster", description="Loa xã broadcast controller")
    parser.add_argument("--instance", type=Path, default=None, help="instance folder (BROADCASTER_INSTANCE)")
    parser.add_argument("--config", type=Path, default=None, help="YAML settings file (BROADCASTER_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("normalize", help="print the spoken form of Vietnamese text")
    p.add_argument("text", nargs="?")
    p.add_argument("--stdin", action="store_true", help="read lines from stdin, print one spoken line each")
    p.set_defaults(func=cmd_normalize)

    p = sub.add_parser("tts", help="render broadcast audio to a file")
    p.add_argument("text")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--engine", default=None)
    p.add_argument("--voice", default=None)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--no-chime", action="store_true")
    p.set_defaults(func=cmd_tts)

    p = sub.add_parser("serve", help="run the web app, the scheduler and the MQTT link")
    p.add_argument("--demo", action="store_true", help="also run 9 simulated clusters in 3 zones")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--mqtt-url", default=None)
    p.add_argument("--db", default=None)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("settings", help="print the effective settings (or --reference: every setting)")
    p.add_argument("--reference", action="store_true", help="Markdown table of every setting and its default")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("token", help="API tokens")
    tsub = p.add_subparsers(dest="token_command", required=True)
    tc = tsub.add_parser("create", help="create a token and print it alone on stdout")
    tc.add_argument("name")
    tc.set_defaults(func=cmd_token)
    tl = tsub.add_parser("list", help="list tokens: name, created, last used, revoked (never the secret)")
    tl.set_defaults(func=cmd_token_list)
    tr = tsub.add_parser("revoke", help="revoke a token; requests with it get 401 at once")
    tr.add_argument("name")
    tr.set_defaults(func=cmd_token_revoke)

    p = sub.add_parser("user", help="officer accounts")
    usub = p.add_subparsers(dest="user_command", required=True)
    ua = usub.add_parser("add", help="create an account")
    ua.add_argument("username")
    ua.add_argument("--role", required=True, choices=["admin", "editor", "approver"])
    ua.add_argument("--name", default=None, help="display name")
    ua.add_argument("--password-stdin", action="store_true")
    ua.set_defaults(func=cmd_user)

    p = sub.add_parser("broker", help="the MQTT broker")
    bsub = p.add_subparsers(dest="broker_command", required=True)
    be = bsub.add_parser("export", help="password file, ACL and config snippet for your own mosquitto")
    be.add_argument("directory", type=Path)
    be.set_defaults(func=cmd_broker_export)

    p = sub.add_parser("speaker", help="loudspeaker clusters")
    ssub = p.add_subparsers(dest="speaker_command", required=True)
    se = ssub.add_parser(
        "enroll", help="create or update a cluster, give it a new password, write its agent.yaml"
    )
    se.add_argument("speaker_id", metavar="ID", help="cluster id (also its MQTT user name)")
    se.add_argument("--zone", required=True, help="zone id (the zone must exist)")
    se.add_argument("--name", default=None, help="display name (default: the id, for a new cluster)")
    se.add_argument(
        "-o", "--output", type=Path, required=True, help="agent.yaml to write (mode 0600), - for stdout"
    )
    se.set_defaults(func=cmd_speaker_enroll)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
