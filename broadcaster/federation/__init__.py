"""Upper levels: the link between a commune, its district and its province, and CAP alerts.

One codebase at any level: a controller may have downstream units (``downstream``: it sends
bulletins down and aggregates what they report) and at most one upstream (``link``: it receives
bulletins and reports up; or ``cap``: a Common Alerting Protocol 1.2 feed). Each upstream adapter
implements :class:`~broadcaster.federation.base.Upstream` and hands what it receives to the one
:class:`~broadcaster.federation.intake.Intake`, which submits through the real broadcast lifecycle.
The wire format is ``docs/federation.md``.

This module imports nothing heavy: ``broadcaster.models`` imports ``federation.models``.
"""
