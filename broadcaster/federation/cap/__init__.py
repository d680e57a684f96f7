"""Common Alerting Protocol 1.2 (OASIS) feeds as an upstream: ``parse`` (safe XML),
``rules`` (alert -> item, pure) and ``feed`` (polling and the webhook; the ``Upstream`` adapter)."""
