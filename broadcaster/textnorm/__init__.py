"""Vietnamese text normalization: announcement text -> what a TTS engine should read aloud.

    >>> from broadcaster.textnorm import normalize
    >>> normalize("UBND xã Phúc Hòa thông báo")
    'ủy ban nhân dân xã phúc hòa thông báo'

Rules live in code (``rules.py``); abbreviations, units and foreign words live in ``data/*.tsv``
and in the extra files of ``TextnormConfig.lexicon_files``; an officer's dictionary is applied
with :meth:`Normalizer.with_overrides`.

``Normalizer.analyze()`` also says what it could not read with confidence: tokens with
``flagged=True`` and a Vietnamese ``note`` (``Normalized.flags``), e.g. an emoji or an unknown
symbol that is not read aloud, or a long bare number read digit by digit.
"""

from broadcaster.textnorm.config import TextnormConfig
from broadcaster.textnorm.errors import EmptyTextError, NormalizationError, TextTooLongError
from broadcaster.textnorm.lexicon import Lexicon, LexiconError
from broadcaster.textnorm.normalizer import Normalized, Normalizer, Token, default_normalizer, normalize

__all__ = [
    "EmptyTextError",
    "Lexicon",
    "LexiconError",
    "NormalizationError",
    "Normalized",
    "Normalizer",
    "TextTooLongError",
    "TextnormConfig",
    "Token",
    "default_normalizer",
    "normalize",
]
