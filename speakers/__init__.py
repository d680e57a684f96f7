"""The speaker node agent and the cluster simulator. Installs with paho-mqtt and no Flask."""

__version__ = "0.1.0"
