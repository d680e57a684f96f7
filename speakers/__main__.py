"""``speaker-agent``: the node agent and the cluster simulator.

speaker-agent run --config agent.yaml          (the enrollment file needs nothing else)
speaker-agent run --id ID --zone ZONE --mqtt-url mqtt://user:pass@host:port [--config FILE]
                  [--player real|null|file] [--output-dir DIR] [--cache-dir DIR] [--health-interval 30]
speaker-agent install --config agent.yaml [--root DIR] [--dry-run] [--user NAME]
speaker-agent check --config agent.yaml
speaker-agent simulate --count N --zones Z --mqtt-url URL [--id-prefix sim-] [--clock-skew 2.0]
                  [--drop-rate PER_MIN] [--latency-ms MS] [--health-interval S]
                  [--password-template 'pw-{id}'] [--ca-file ca.crt] [--shard K/N]
                  [--reconnect-min S] [--reconnect-max S] [--request-timeout S]
speaker-agent check-config FILE
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from speakers import __version__
from speakers.config import AgentConfig, ConfigError, load_config

_LOGGER = logging.getLogger("speakers")


def _setup_logging(verbose: bool, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        logging.getLogger("speakers.mqtt").setLevel(logging.WARNING)


def _run_overrides(args: argparse.Namespace) -> dict:
    return {
        "id": args.id,
        "zone": args.zone,
        "mqtt": {"url": args.mqtt_url, "prefix": args.prefix},
        "player": {"kind": args.player, "output_dir": args.output_dir},
        "audio": {"cache_dir": args.cache_dir},
        "health": {"interval_s": args.health_interval},
    }


def cmd_run(args: argparse.Namespace) -> int:
    from speakers.agent import AgentCrashed
    from speakers.player import PlayerError
    from speakers.service import run_agent

    try:
        config = load_config(args.config, _run_overrides(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(args.verbose)
    try:
        asyncio.run(run_agent(config))
    except (PlayerError, AgentCrashed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ok: speaker {config.id} (zone {config.zone or '-'}), player {config.player.kind}")
    return 0


def _load(path: Path) -> AgentConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_install(args: argparse.Namespace) -> int:
    from speakers.service import find_systemctl, install

    config = _load(args.config)
    if config is None:
        return 2
    root = Path(args.root) if args.root else Path("/")
    if root == Path("/") and not args.dry_run and os.geteuid() != 0:
        print(
            "error: installing the service needs root: run it with sudo (or use --root DIR)", file=sys.stderr
        )
        return 2
    if not config.broker_url().tls:
        print(f"warning: {config.broker_url().redacted()} is not TLS: the link will not be encrypted")
    try:
        plan = install(
            args.config,
            config,
            root=root,
            dry_run=args.dry_run,
            user=args.user,
            systemctl=find_systemctl(),
        )
    except OSError as exc:
        print(f"error: cannot install: {exc}", file=sys.stderr)
        return 1
    print(f"speaker {config.id} (zone {config.zone or '-'}):")
    for line in plan.done:
        print(f"  {line}")
    for line in plan.next_steps:
        print(f"next: {line}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from speakers.checks import NodeChecker, failed_essential

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"✗ configuration: {exc}")
        return 2
    print(
        f"✓ configuration: speaker {config.id} (zone {config.zone or '-'}), broker {config.broker_url().redacted()}"
    )
    logging.basicConfig(level=logging.CRITICAL)  # the lines below say it all
    results = asyncio.run(NodeChecker(config, timeout_s=args.timeout).run())
    for result in results:
        print(result.line(), flush=True)
    if failed_essential(results):
        print("Something essential does not work: see the lines marked ✗.")
        return 1
    print("Everything essential works.")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from speakers.mqtt import MqttUrlError
    from speakers.simulator import Simulator, SimulatorError, run_simulator
    from speakers.tls import TlsConfigError

    _setup_logging(args.verbose, quiet=True)
    credentials = None
    if args.password_template:
        template = args.password_template

        def credentials(speaker_id: str) -> tuple[str, str]:
            return speaker_id, template.replace("{id}", speaker_id)

    zones: int | list[str] = args.zones
    if args.zone_names:
        zones = [z.strip() for z in args.zone_names.split(",") if z.strip()]
    try:
        shard = _shard(args.shard) if args.shard else None
        ca_pem = args.ca_file.read_text(encoding="ascii") if args.ca_file else None
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sim = Simulator(
            args.mqtt_url,
            args.count,
            zones,
            prefix=args.prefix,
            id_prefix=args.id_prefix,
            credentials=credentials,
            clock_skew_s=args.clock_skew,
            health_interval_s=args.health_interval,
            cache_root=args.cache_dir,
            drop_rate_per_min=args.drop_rate,
            latency_ms=args.latency_ms,
            seed=args.seed,
            reconnect_min_s=args.reconnect_min,
            reconnect_max_s=args.reconnect_max,
            request_timeout_s=args.request_timeout,
            ca_pem=ca_pem,
            shard=shard,
        )
    except (SimulatorError, MqttUrlError, TlsConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run_simulator(sim))
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _shard(text: str) -> tuple[int, int]:
    """``K/N`` (0-based K): this process simulates every N-th cluster from the K-th."""
    k, _, n = text.partition("/")
    try:
        index, total = int(k), int(n)
    except ValueError:
        raise ValueError(f"--shard {text!r}: use K/N, e.g. 0/4") from None
    if total < 1 or not 0 <= index < total:
        raise ValueError(f"--shard {text!r}: use 0 <= K < N")
    return index, total


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speaker-agent", description="Loa xã speaker node agent")
    parser.add_argument("--version", action="version", version=f"speaker-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the agent of one loudspeaker cluster")
    p.add_argument("--config", type=Path, default=None, help="YAML config file")
    p.add_argument("--id", default=None, help="speaker id (also the MQTT user name)")
    p.add_argument("--zone", default=None, help="zone (thôn) id")
    p.add_argument("--mqtt-url", default=None, help="mqtt://user:password@host:port")
    p.add_argument("--prefix", default=None, help="topic prefix (default loa)")
    p.add_argument("--player", choices=("real", "null", "file"), default=None)
    p.add_argument("--output-dir", type=Path, default=None, help="folder of the file player")
    p.add_argument("--cache-dir", type=Path, default=None, help="audio cache folder")
    p.add_argument("--health-interval", type=float, default=None, help="seconds between health messages")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("install", help="install the agent as a systemd service")
    p.add_argument("--config", type=Path, required=True, help="the cluster's agent.yaml (from enrollment)")
    p.add_argument("--root", type=Path, default=None, help="install into this folder instead of /")
    p.add_argument("--dry-run", action="store_true", help="only say what would be done")
    p.add_argument("--user", default=None, help="run the service as this user (default root)")
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("check", help="say what works on this node and what does not")
    p.add_argument("--config", type=Path, required=True, help="the agent config (e.g. /etc/loa/agent.yaml)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each network check")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("simulate", help="run N virtual clusters in this process")
    p.add_argument("--mqtt-url", required=True, help="mqtt://[user:password@]host:port")
    p.add_argument("--count", type=int, default=9)
    p.add_argument("--zones", type=int, default=3, help="number of zones thon-1..thon-Z")
    p.add_argument("--zone-names", default=None, help="comma-separated zone ids instead of --zones")
    p.add_argument("--prefix", default="loa")
    p.add_argument("--id-prefix", default="loa-")
    p.add_argument(
        "--password-template",
        default=None,
        help="per-node credentials: user = speaker id, password = template with {id} (default: the URL's)",
    )
    p.add_argument(
        "--clock-skew", type=float, default=0.0, help="per-node clock error, uniform in +-S seconds"
    )
    p.add_argument("--drop-rate", type=float, default=0.0, help="abrupt drops per node per minute")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added latency each way")
    p.add_argument("--health-interval", type=float, default=30.0)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--ca-file", type=Path, default=None, help="CA to pin (PEM) for an mqtts:// URL")
    p.add_argument("--shard", default=None, help="K/N: simulate every N-th cluster from the K-th (0-based)")
    p.add_argument("--reconnect-min", type=float, default=0.5, help="first reconnect backoff, seconds")
    p.add_argument("--reconnect-max", type=float, default=10.0, help="longest reconnect backoff, seconds")
    p.add_argument(
        "--request-timeout", type=float, default=3.0, help="ask again for missing audio after this long idle"
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("check-config", help="validate an agent config file")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
