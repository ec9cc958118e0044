"""Importing a coreBOS (or vtiger) install: its users as owners, contacts, accounts, leads, emails (saved-only
ones as drafts) and opens, as a real coreBOS install holds them.

Read-only on the source (the session is READ ONLY).  Each imported row keeps its coreBOS id (``corebos_id``;
recipients their (crmid, mailid) pair), so a second run adds only what is new and changes nothing else.
The pairs are what coreBOS's image URLs name: with them, old images keep counting
(tracking/corebos_images.py).  The parts: source.py (connecting, the schema's checks), times.py (coreBOS's
zone), addresses.py (who was mailed, from what), owners.py, records.py, emails.py, writing.py (batches
written), importer.py (one run), report.py (what it prints).
"""

from .importer import Importer
from .report import ImportReport
from .source import CoreBOSError, Schema, connect
from .times import Clock, clock_for

__all__ = ["Clock", "CoreBOSError", "ImportReport", "Importer", "Schema", "clock_for", "connect"]
