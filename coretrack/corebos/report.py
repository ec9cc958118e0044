"""What an import of coreBOS found and did, as the command prints it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

STAGES = ("users", "accounts", "contacts", "leads", "emails", "drafts", "recipients", "events")
# A stage's progress: told its name and how many rows it reads, it gives what to call as they are read.
Advance = Callable[[int], None]
Progress = Callable[[str, int], AbstractContextManager[Advance]]


@contextmanager
def no_progress(_stage: str, _total: int) -> Iterator[Advance]:
    yield lambda _rows: None


@dataclass
class Stage:
    found: int = 0
    new: int = 0


@dataclass
class ImportReport:
    stages: dict[str, Stage] = field(default_factory=lambda: {name: Stage() for name in STAGES})
    opted_out: int = 0
    # Recipients whose coreBOS count is not the number of its access rows (kept: coreBOS's count).
    counts_differ: int = 0
    # Links to a record that was not imported (deleted, converted) or has no address.
    unlinked: int = 0
    # Recipients that were coreBOS users (idlists' -1 or a Users field): not imported.
    to_users: int = 0
    # Converted leads whose email history was put on the contact or account they became.
    converted_followed: int = 0
    # Owners that were a coretrack user of the same name already (kept as they are).
    owners_matched: int = 0
    # Emails whose owner is not a coreBOS user (a group, a deleted user): owned by the first admin.
    owner_unknown: int = 0
    # Access rows whose time of day was lost by an old coreBOS (kept with their day only).
    time_unknown: int = 0
    # Values the form would refuse (a javascript: website, a bad address, a line break...), left
    # out: "contacts email" -> how many.
    left_out: Counter[str] = field(default_factory=Counter)
    # What an older or customised schema kept from being imported (source.Schema.notes).
    schema_notes: list[str] = field(default_factory=list)

    def lines(self, dry_run: bool = False) -> list[str]:
        verb = "would import" if dry_run else "imported"
        lines = [f"{name}: {stage.found} in coreBOS, {verb} {stage.new} new" for name, stage in self.stages.items()]
        lines.append(f"opted out on import: {self.opted_out}")
        lines.append(f"recipients whose coreBOS count differs from its access rows (coreBOS's count kept): "
                     f"{self.counts_differ}")
        optional = [
            (self.time_unknown, "opens whose time of day an old coreBOS lost (kept as their day, time unknown)"),
            (self.converted_followed, "converted leads' recipients put on the contact or account they became"),
            (self.to_users, "recipients that were coreBOS users (not imported)"),
            (self.owners_matched, "owners that already were coretrack users of the same name (left as they are)"),
            (self.owner_unknown, "emails whose owner is no coreBOS user (a group?): owned by the first admin"),
            (self.unlinked, "links skipped (record deleted, converted or without an address)"),
        ]
        lines += [f"{text}: {count}" for count, text in optional if count]
        if self.left_out:
            counts = ", ".join(f"{name} {count}" for name, count in sorted(self.left_out.items()))
            lines.append(f"values left out (the form would refuse them): {counts}")
        lines += self.schema_notes
        return lines
