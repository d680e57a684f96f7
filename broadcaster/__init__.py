"""Loa xã controller: Vietnamese announcements to commune loudspeaker clusters over MQTT."""

__version__ = "0.1.0"
