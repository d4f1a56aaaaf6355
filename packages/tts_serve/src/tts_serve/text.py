"""Input text handling: normalization, sentence splitting, voice-name sanitizing.

Long input is synthesized sentence by sentence, so the first sentence's audio can be sent while
the rest is still being generated, and no piece goes over the engine's per-call limit (XTTS
has a character limit per language).
"""

from __future__ import annotations

import re
import textwrap
import unicodedata

# A sentence ends at . ! ? … (and their CJK/Devanagari forms), optionally followed by closing
# quotes or brackets; in scripts written with spaces a space must follow.
_SENTENCE_END = re.compile(
    "(?<=[.!?\u2026;])[\"'\u201d\u2019)\\]]*\\s+"  # Latin-style: punctuation, quotes, space
    "|(?<=[\u3002\uff01\uff1f\uff1b\u0964])\\s*"  # CJK and Devanagari full stops
)
_CLAUSE_END = re.compile("(?<=[,:])\\s+|(?<=[\uff0c\u3001\uff1a])\\s*")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFC, control characters removed, whitespace runs collapsed to one space."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(
        ch if (ch in "\n\t" or unicodedata.category(ch)[0] != "C") else " " for ch in text
    )
    return _SPACES.sub(" ", text).strip()


def _wrap(piece: str, max_chars: int) -> list[str]:
    """Split an over-long sentence at clause boundaries, then at spaces, then hard."""
    if len(piece) <= max_chars:
        return [piece]
    out: list[str] = []
    current = ""
    for clause in _CLAUSE_END.split(piece):
        clause = clause.strip()
        if not clause:
            continue
        candidate = f"{current} {clause}".strip()
        if len(candidate) <= max_chars:
            current = candidate
            continue
        if current:
            out.append(current)
        if len(clause) <= max_chars:
            current = clause
        else:
            lines = textwrap.wrap(
                clause, width=max_chars, break_long_words=True, break_on_hyphens=False
            )
            out.extend(lines[:-1])
            current = lines[-1] if lines else ""
    if current:
        out.append(current)
    return out


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Sentences of `text`, each at most `max_chars` long, in order, none empty.

    Very short fragments ("Hi." or "Yes!") are joined to the next sentence so the engine is
    not called on a word at a time.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    text = normalize_text(text)
    if not text:
        return []
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]
    pieces: list[str] = []
    carry = ""
    for sentence in sentences:
        sentence = f"{carry} {sentence}".strip() if carry else sentence
        carry = ""
        if len(sentence) < 12 and len(sentence) < max_chars:
            carry = sentence
            continue
        pieces.extend(_wrap(sentence, max_chars))
    if carry:
        if pieces and len(pieces[-1]) + 1 + len(carry) <= max_chars:
            pieces[-1] = f"{pieces[-1]} {carry}"
        else:
            pieces.append(carry)
    return pieces


_SLUG_BAD = re.compile(r"[^a-z0-9]+")
MAX_VOICE_ID_CHARS = 48
MAX_VOICE_NAME_CHARS = 64


def voice_slug(name: str) -> str:
    """A safe voice id from a display name: ASCII lowercase letters, digits and '-'.

    "Ana Florence" -> "ana-florence"; "Zoë's voice #2" -> "zoe-s-voice-2". Empty if nothing
    usable remains.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _SLUG_BAD.sub("-", ascii_name.lower()).strip("-")
    return slug[:MAX_VOICE_ID_CHARS].strip("-")


def clean_voice_name(name: str) -> str:
    """A display name without control characters or outer spaces, at most 64 characters."""
    return normalize_text(name)[:MAX_VOICE_NAME_CHARS].strip()


def is_voice_id(value: str) -> bool:
    return bool(value) and voice_slug(value) == value
