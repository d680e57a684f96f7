"""Fakes of our seams (Engine, Store, Transport, Player, Amplifier): real modules that implement
each protocol in the simplest way possible, for unit tests. Integration tests use the real parts.
"""

# --- speech fakes (TtsEngine, Store) ---

# --- speaker fakes (Player, Amplifier) ---

# --- controller fakes ---
