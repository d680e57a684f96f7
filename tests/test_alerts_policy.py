"""Alert notifier, pure parts: the delay/rate-limit policy, the message text, the settings."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broadcaster.alerts.config import AlertsConfig, AlertsConfigError, channels_reference_markdown
from broadcaster.alerts.messages import Formatter, duration_vi
from broadcaster.alerts.policy import AlertPolicy, ChannelRule, Entry, Outgoing
from broadcaster.fleet.alerting import AlertChange
from broadcaster.settings import SettingsError, load_settings

T0 = datetime(2025, 2, 3, 22, 12, tzinfo=UTC)  # 05:12 on 4 Feb in Hà Nội


def change(
    speaker: str = "loa-01", kind: str = "offline", state: str = "raised", alert_id: int = 1, **kw: object
) -> AlertChange:
    fields: dict[str, object] = {
        "message": "Cụm loa mất kết nối",
        "raised_at": T0,
        "speaker_name": "Loa 1",
        "zone": "thon-1",
        "zone_name": "Thôn Đông",
        **kw,
    }
    if state == "resolved":
        fields.setdefault("cleared_at", T0 + timedelta(minutes=65))
    return AlertChange(state, alert_id, speaker, kind, **fields)  # type: ignore[arg-type]


def policy(count: int = 3, window: float = 100.0, delay: float = 10.0, **rules: frozenset[str] | None):
    channels = [ChannelRule(name, kinds) for name, kinds in (rules or {"mail": None, "hook": None}).items()]
    return AlertPolicy(channels, offline_delay_s=delay, rate_limit_count=count, rate_limit_window_s=window)


def by_channel(out: list[Outgoing], channel: str) -> list[Outgoing]:
    return [o for o in out if o.channel == channel]


def test_offline_waits_for_the_delay_and_a_blip_sends_nothing() -> None:
    p = policy()
    assert p.add(change(), now=0.0) == [] and p.pending() == 1 and p.next_due() == 10.0
    assert p.tick(9.9) == []
    out = p.tick(10.0)
    assert [(o.channel, o.entries[0].change.state) for o in out] == [("mail", "raised"), ("hook", "raised")]
    assert p.add(change(state="resolved"), now=20.0)[0].entries[0].change.state == "resolved"
    # A blip: raised and resolved inside the delay.
    assert p.add(change(alert_id=2), now=30.0) == []
    assert p.add(change(alert_id=2, state="resolved"), now=35.0) == []
    assert p.pending() == 0 and p.stats["cancelled"] == 1
    assert p.tick(1000.0) == [] and p.next_due() is None


def test_other_kinds_are_sent_at_once_and_channels_filter_kinds() -> None:
    p = policy(mail=None, zalo=frozenset({"offline"}))
    out = p.add(change(kind="backup_power", message="Cụm loa đang chạy bằng nguồn dự phòng"), now=0.0)
    assert [o.channel for o in out] == ["mail"]
    assert p.add(change(kind="offline", alert_id=2), now=0.0) == []
    assert sorted(o.channel for o in p.tick(10.0)) == ["mail", "zalo"]


def test_a_burst_is_bounded_per_window_and_the_rest_goes_in_one_digest() -> None:
    p = policy(count=5, window=60.0, delay=0.0)
    sent: list[Outgoing] = []
    for i in range(50):
        sent += p.add(change(f"loa-{i:02d}", kind="error", alert_id=i + 1), now=float(i) / 10)
    assert len(by_channel(sent, "mail")) == 5 and not any(o.digest for o in sent)
    assert p.backlog() == 2 * 45 and p.next_due() == 60.0
    digests = p.tick(60.0)
    assert [o.channel for o in digests] == ["mail", "hook"] and all(o.digest for o in digests)
    assert len(digests[0].entries) == 45
    # The digest opens the next window and counts in it: 4 more single messages, then a backlog again.
    more = []
    for i in range(50, 60):
        more += p.add(change(f"loa-{i:02d}", kind="error", alert_id=i + 1), now=61.0)
    assert len(by_channel(more, "mail")) == 4
    assert len(by_channel(p.tick(120.0), "mail")) == 1  # the second digest
    assert p.tick(500.0) == [] and p.next_due() is None


def test_a_resolution_joins_its_raise_in_the_backlog() -> None:
    p = policy(count=1, window=60.0, delay=0.0, mail=None)
    p.add(change("loa-01", kind="error", alert_id=1), now=0.0)
    p.add(change("loa-02", kind="error", alert_id=2), now=1.0)
    p.add(change("loa-02", kind="error", alert_id=2, state="resolved"), now=2.0)
    (digest,) = p.tick(60.0)
    assert len(digest.entries) == 1 and digest.entries[0].resolved is not None and digest.digest


def test_a_single_held_alert_goes_out_as_an_ordinary_message() -> None:
    p = policy(count=1, window=60.0, delay=0.0, mail=None)
    p.add(change("loa-01", kind="error", alert_id=1), now=0.0)
    p.add(change("loa-02", kind="error", alert_id=2), now=1.0)
    (out,) = p.tick(60.0)
    assert not out.digest and out.entries[0].change.speaker == "loa-02"


def test_single_message_text_is_vietnamese_with_the_commune_cluster_zone_and_time() -> None:
    f = Formatter("Xã Hòa Bình", "Asia/Ho_Chi_Minh", "https://loa.example/bang-dieu-khien")
    notice = f.notice(Outgoing("mail", (Entry(change()),)))
    assert notice.subject == "[Loa xã – Xã Hòa Bình] Mất kết nối: Loa 1, Thôn Đông"
    assert notice.text.splitlines()[0] == "Cảnh báo: Cụm loa mất kết nối"
    assert "Cụm loa: Loa 1 (mã loa-01)" in notice.text
    assert "Khu vực: Thôn Đông (mã thon-1)" in notice.text
    assert "Từ lúc: 05:12 ngày 04/02/2025" in notice.text
    assert "https://loa.example/bang-dieu-khien" in notice.text
    assert unicodedata.is_normalized("NFC", notice.text)
    payload = notice.payload
    assert payload["state"] == "raised" and payload["kind"] == "offline" and payload["speaker"] == "loa-01"
    assert payload["zone"] == "thon-1" and payload["message"] == "Cụm loa mất kết nối"
    assert payload["raised_at"] == T0.isoformat() and payload["instance"] == "Xã Hòa Bình"
    resolved = f.notice(Outgoing("mail", (Entry(change(state="resolved")),)))
    assert resolved.subject.startswith("[Loa xã – Xã Hòa Bình] Đã khắc phục: Mất kết nối")
    assert resolved.text.splitlines()[0] == "Đã khắc phục: Cụm loa mất kết nối"
    assert "Khắc phục lúc: 06:17 ngày 04/02/2025 (kéo dài 1 giờ 5 phút)" in resolved.text
    assert resolved.payload["state"] == "resolved" and resolved.payload["cleared_at"]


def test_digest_lists_some_and_counts_the_rest() -> None:
    f = Formatter("Xã Hòa Bình", digest_max_lines=3)
    entries = tuple(Entry(change(f"loa-{i:02d}", alert_id=i)) for i in range(30))
    notice = f.notice(Outgoing("mail", entries, digest=True))
    assert notice.subject == "[Loa xã – Xã Hòa Bình] 30 cảnh báo cụm loa"
    assert notice.text.count("• ") == 3 and "và 27 cảnh báo khác" in notice.text
    assert notice.payload["state"] == "digest" and notice.payload["count"] == 30
    assert len(notice.payload["items"]) == 30 and notice.alert_count == 30


def test_duration_in_vietnamese() -> None:
    assert duration_vi(45) == "45 giây"
    assert duration_vi(125) == "2 phút"
    assert duration_vi(3600 * 3) == "3 giờ"
    assert duration_vi(86400 * 2 + 3600) == "2 ngày 1 giờ"


def test_settings_section_validates_channels_and_hides_secrets() -> None:
    data = {
        "alerts": {
            "instance_name": "Xã Hòa Bình",
            "channels": [
                {
                    "type": "smtp",
                    "host": "smtp.example",
                    "security": "ssl",
                    "username": "loa",
                    "password": "mật-khẩu-smtp",
                    "from": "Loa xã <loa@example.vn>",
                    "to": ["a@example.vn", "b@example.vn"],
                },
                {
                    "type": "webhook",
                    "url": "https://api.example/botTOKEN123/sendMessage",
                    "secret": "bí-mật-webhook",
                    "fields": {"chat_id": 42},
                    "kinds": ["offline", "backup_power"],
                },
            ],
        }
    }
    settings = load_settings(data, environ={})
    smtp, hook = settings.alerts.channels
    assert smtp.effective_port == 465 and smtp.from_ == "Loa xã <loa@example.vn>"  # type: ignore[union-attr]
    dumped = settings.model_dump_json() + repr(settings)
    for secret in ("mật-khẩu-smtp", "bí-mật-webhook", "TOKEN123"):
        assert secret not in dumped
    with pytest.raises(SettingsError, match=r"alerts\.channels\.0\.smtp\.to"):
        load_settings(
            {"alerts": {"channels": [{"type": "smtp", "host": "h", "from": "a@b", "to": []}]}}, environ={}
        )
    with pytest.raises(SettingsError, match="unknown alert kinds"):
        load_settings(
            {"alerts": {"channels": [{"type": "webhook", "url": "http://h/x", "kinds": ["x"]}]}}, environ={}
        )
    with pytest.raises(SettingsError, match="http"):
        load_settings({"alerts": {"channels": [{"type": "webhook", "url": "ftp://h/x"}]}}, environ={})
    with pytest.raises(SettingsError, match="alerts.rate_limit_count"):
        load_settings({"alerts": {"rate_limit_count": 0}}, environ={})
    with pytest.raises(SettingsError, match="typo"):
        load_settings({"alerts": {"typo": 1}}, environ={})


def test_secret_from_an_environment_variable() -> None:
    config = AlertsConfig.model_validate(
        {
            "channels": [
                {
                    "type": "smtp",
                    "host": "h",
                    "username": "u",
                    "password_env": "LOA_SMTP_PW",
                    "from": "a@b.vn",
                    "to": ["c@d.vn"],
                }
            ]
        }
    )
    channel = config.channels[0]
    assert channel.resolve_password({"LOA_SMTP_PW": "s3cret"}) == "s3cret"  # type: ignore[union-attr]
    with pytest.raises(AlertsConfigError, match="LOA_SMTP_PW"):
        channel.resolve_password({})  # type: ignore[union-attr]


def test_configuration_document_lists_every_channel_key() -> None:
    document = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text(
        encoding="utf-8"
    )
    assert channels_reference_markdown() in document, (
        "docs/configuration.md is stale: paste broadcaster.alerts.config.channels_reference_markdown()"
    )


def test_the_notifier_refuses_a_channel_whose_secret_variable_is_missing() -> None:
    from broadcaster.alerts import AlertNotifier

    config = AlertsConfig.model_validate(
        {
            "channels": [
                {"type": "webhook", "url": "https://relay.example/loa", "secret_env": "LOA_HOOK_SECRET"}
            ]
        }
    )
    with pytest.raises(AlertsConfigError, match="LOA_HOOK_SECRET"):
        AlertNotifier(config, None, environ={})
    notifier = AlertNotifier(config, None, environ={"LOA_HOOK_SECRET": "x" * 16})
    assert list(notifier.metrics()["channels"]) == ["webhook:https://relay.example"]  # no secret in a name
