"""PII detection: the scanner contract, reversible placeholders and the organisation's places.

Re-exported here is what the API may use (plain types and pure logic, no model loads):
the ``PIIScanner`` Protocol and the ``ScanResult``/``PIISpan`` data that cross Ray handles
(``base``), the placeholder vault (``placeholders``) and the place allow-list (``places``).
The backends are imported by their own module, so that importing this package never loads
spaCy or Presidio: ``presidio_scanner`` (Presidio on a local spaCy pipeline, the PII
replica), ``pattern_scanner`` (patterns only, fast enough for a streamed reply) and
``names`` (Faker's name lists).
"""

from __future__ import annotations

from models.pii.base import Entity, PIIScanner, PIISpan, ScanResult
from models.pii.placeholders import PLACEHOLDER_RE, PlaceholderVault
from models.pii.places import PlaceAllowList, normalise_place

__all__ = [
    "PLACEHOLDER_RE",
    "Entity",
    "PIIScanner",
    "PIISpan",
    "PlaceAllowList",
    "PlaceholderVault",
    "ScanResult",
    "normalise_place",
]
