"""Alerts that reach people: fleet alerts sent by e-mail (SMTP) and webhook (JSON), with a delay
for short blips, a rate limit per channel with digests, "resolved" messages, retries.

``config.py`` the ``alerts`` settings section; ``policy.py`` when a change becomes a message (pure);
``messages.py`` the Vietnamese text and the JSON; ``channels.py`` SMTP and webhook delivery;
``notifier.py`` the threads that tie them to the fleet."""

from broadcaster.alerts.config import AlertsConfig, AlertsConfigError
from broadcaster.alerts.notifier import AlertNotifier

__all__ = ["AlertNotifier", "AlertsConfig", "AlertsConfigError"]
