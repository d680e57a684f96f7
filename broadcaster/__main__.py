"""Command line of the controller: parses arguments, builds services, nothing else.

broadcaster [--instance DIR] [--config FILE] normalize "TEXT" | --stdin
broadcaster [--instance DIR] tts "TEXT" -o out.mp3 [--engine E] [--voice V] [--repeat N]
broadcaster [--instance DIR] serve [--demo] [--host H] [--port P] [--mqtt-url URL] [--db URL]
broadcaster [--instance DIR] settings [--reference]
broadcaster [--instance DIR] token create NAME | list | revoke NAME
broadcaster [--instance DIR] user add USERNAME --role admin|editor|approver [--password-stdin]
broadcaster [--instance DIR] broker export DIR
broadcaster [--instance DIR] downstream add NAME [--name TEXT] | list | revoke NAME
broadcaster [--instance DIR] upstream set URL --token TOKEN | show | clear
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
    from broadcaster.alerts import AlertsConfigError
    from broadcaster.broker import BrokerError
    from broadcaster.demo import Demo
    from broadcaster.scheduling.lock import SchedulerLockedError
    from broadcaster.services import build_services
    from broadcaster.transport import TransportError
    from broadcaster.web import create_app, shutdown_app
    from broadcaster.web.serve import WebTlsError, make_web_server

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
    try:
        # Polls of lower levels held open (federation) get threads of their own beyond the 8.
        threads = 8 + settings.federation.max_held_polls
        server = make_web_server(app, settings, threads=threads)  # HTTPS files checked before anything starts
    except WebTlsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
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
        server.bind()
        print(f"Loa xã: {server.url}/", flush=True)
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
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


def cmd_downstream(args: argparse.Namespace) -> int:
    """Downstream units (the upper level): ``add`` prints the unit's token once, alone on stdout."""
    from broadcaster.federation.units import UnitError, add_unit, list_units, revoke_unit

    sessions = _token_sessions(args)
    try:
        if args.downstream_command == "add":
            print(add_unit(sessions, args.unit, args.name or ""))
        elif args.downstream_command == "revoke":
            revoke_unit(sessions, args.unit)
            print(f"unit {args.unit} revoked: its link is cut")
        else:
            units = list_units(sessions)
            if not units:
                print("no downstream units (add one with: broadcaster downstream add NAME)")
            for u in units:
                state = "revoked" if u["revoked"] else "active"
                seen = _short_time(u["last_seen"]) or "never"
                print(
                    f"{u['name']}  {state}  last seen {seen}  queued {u['queued']}  {u['last_error'] or ''}".rstrip()
                )
    except UnitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_upstream(args: argparse.Namespace) -> int:
    """The upstream (the lower level): set, show, clear. A running controller picks it up."""
    from broadcaster.federation.admin import LinkConfigError, clear_upstream, set_upstream, show_upstream

    sessions = _token_sessions(args)
    if args.upstream_command == "set":
        try:
            link = set_upstream(sessions, args.url, args.token)
        except LinkConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"upstream set: {link['url']} as unit {link['unit']}")
        return 0
    if args.upstream_command == "clear":
        print("upstream cleared" if clear_upstream(sessions) else "no upstream was set")
        return 0
    link = show_upstream(sessions)
    if link is None:
        print("no upstream (set one with: broadcaster upstream set URL --token TOKEN)")
        return 0
    for key, value in link.items():
        print(f"{key}: {value if value is not None else ''}")
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

    p = sub.add_parser("downstream", help="units below this one (a district's communes)")
    dsub = p.add_subparsers(dest="downstream_command", required=True)
    da = dsub.add_parser("add", help="register a unit and print its token once")
    da.add_argument("unit", help="unit name: lower-case letters, digits and '-', e.g. xa-phuc-hoa")
    da.add_argument("--name", default=None, help="display name, e.g. 'Xã Phúc Hòa'")
    da.set_defaults(func=cmd_downstream)
    dl = dsub.add_parser("list", help="list units: state, last seen, items queued for them")
    dl.set_defaults(func=cmd_downstream)
    dr = dsub.add_parser("revoke", help="revoke a unit's token: its link is cut at once")
    dr.add_argument("unit")
    dr.set_defaults(func=cmd_downstream)

    p = sub.add_parser("upstream", help="the level above this one (district or province)")
    usub2 = p.add_subparsers(dest="upstream_command", required=True)
    us = usub2.add_parser("set", help="link to the upper level with the token it printed")
    us.add_argument("url", help="the upper level's address, e.g. https://huyen.example.vn")
    us.add_argument("--token", required=True, help="the token printed by 'downstream add' up there")
    us.set_defaults(func=cmd_upstream)
    ush = usub2.add_parser("show", help="the upstream and the state of the link (never the token)")
    ush.set_defaults(func=cmd_upstream)
    uc = usub2.add_parser("clear", help="forget the upstream (reports still queued are dropped)")
    uc.set_defaults(func=cmd_upstream)
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
