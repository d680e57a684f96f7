"""Fakes of our seams, one per seam, each a real module that implements the protocol in the
simplest way possible and returns the real shapes (``tests/test_fakes_contract.py`` runs the same
assertions against each fake and its real implementation). Integration tests use the real parts.

- ``engines``: TtsEngine (FakeEngine and its failing, hanging and garbled variants)
- ``normalizer``: the textnorm API
- ``store``: the audio store (MemoryStore)
- ``speech``: the speech service (FakeSpeech)
- ``fleet``: the fleet (FakeFleet)
- ``speakers``: the node's Player and Amplifier
- ``node``: a speaker node on the in-memory transport (FakeNode)
- ``faults``: fault injection over real parts (FlakyTransport, FlakyCommitSessions)

The broadcast lifecycle has no fake: tests run the real one (its ledger on a real SQLite file)
with these collaborators.
"""

from tests.fakes.engines import FailingEngine, FakeEngine, GarbledEngine, HangingEngine, tone_pcm16
from tests.fakes.faults import FlakyCommitSessions, FlakyTransport, payloads
from tests.fakes.fleet import FakeFleet
from tests.fakes.node import FakeNode
from tests.fakes.normalizer import FakeNormalizer
from tests.fakes.speakers import FakeAmplifier, FakePlayer
from tests.fakes.speech import FakeSpeech
from tests.fakes.store import MemoryStore

__all__ = [
    "FailingEngine",
    "FakeAmplifier",
    "FakeEngine",
    "FakeFleet",
    "FakeNode",
    "FakeNormalizer",
    "FakePlayer",
    "FakeSpeech",
    "FlakyCommitSessions",
    "FlakyTransport",
    "GarbledEngine",
    "HangingEngine",
    "MemoryStore",
    "payloads",
    "tone_pcm16",
]
