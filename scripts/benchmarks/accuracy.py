"""How well the verdict rules tell people from machines, on the labelled corpus (tests/data/verdicts/).

Run: scripts/bench-accuracy [FILE...]   (default: corpus.jsonl, then the held-out holdout.jsonl and the
two sets other people wrote without seeing the rules, outside/ and outside2/)

Every event is judged by the product's own rules, as the counting paths apply them: a recipient's
loads in time order by verdicts.Loads (what count_hits does), their clicks by
click_verdicts.alone and click_verdicts.judge over the clicks before and after (what clicks.record
does, with its revisions), addresses as the default storage policy keeps them.  Prints, per set, each
class with how many of its events were judged right, and precision and recall of "likely human" for
opens and clicks; the last line is the first set's figures:
human_open_precision=… human_open_recall=… human_click_precision=… human_click_recall=…
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from coretrack.tracking import click_verdicts
from coretrack.tracking.hits import Hit
from coretrack.tracking.verdicts import Loads, store_ip

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "data" / "verdicts"
SETS = ("corpus.jsonl", "holdout.jsonl", "outside/outside.jsonl", "outside2/outside2.jsonl")
SENT = datetime(2026, 3, 2, 9, 0)
POLICY = "truncated"  # the default ip_storage


def judged(sequence: dict) -> Iterator[tuple[dict, str, str]]:
    """Each event of one recipient's sequence with the verdict and reason the rules give it."""
    delivered = SENT + timedelta(seconds=sequence["delivered_after"]) if sequence["delivery_reported"] else None
    loads = Loads(SENT, delivered)
    clicks: list[click_verdicts.Click] = []
    click_events: list[dict] = []
    for event in sequence["events"]:
        at = SENT + timedelta(seconds=event["since_send"])
        if event["kind"] == "open":
            yield (event, *loads.judge(Hit("corpus", at, event["ip"], event["user_agent"])))
        else:
            verdict, reason = click_verdicts.alone(event["user_agent"], event["ip"], SENT, at)
            clicks.append(click_verdicts.Click(at, event["link"], store_ip(event["ip"], POLICY), verdict, reason))
            click_events.append(event)
    for event, (verdict, reason) in zip(click_events, click_verdicts.judge(clicks), strict=True):
        yield event, verdict, reason


@dataclass
class Tally:
    true_human: int = 0
    false_human: int = 0
    missed_human: int = 0

    def add(self, label: str, verdict: str) -> None:
        human = verdict == "human"
        if label == "human":
            self.true_human += human
            self.missed_human += not human
        else:
            self.false_human += human

    @property
    def precision(self) -> float:
        return self.true_human / max(1, self.true_human + self.false_human)

    @property
    def recall(self) -> float:
        return self.true_human / max(1, self.true_human + self.missed_human)


@dataclass
class Report:
    kinds: dict[str, Tally] = field(default_factory=lambda: {"open": Tally(), "click": Tally()})
    classes: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    reasons: dict[tuple[str, str, str], Counter[str]] = field(default_factory=dict)

    def add(self, event: dict, verdict: str, reason: str) -> None:
        key = (event["class"], event["kind"], event["label"])
        self.kinds[event["kind"]].add(event["label"], verdict)
        counts = self.classes.setdefault(key, [0, 0])
        counts[0] += 1
        counts[1] += (verdict == "human") == (event["label"] == "human")
        self.reasons.setdefault(key, Counter())[reason or "(person)"] += 1

    def figures(self) -> str:
        opens, clicks = self.kinds["open"], self.kinds["click"]
        return (f"human_open_precision={opens.precision:.3f} human_open_recall={opens.recall:.3f} "
                f"human_click_precision={clicks.precision:.3f} human_click_recall={clicks.recall:.3f}")


def measure(path: Path) -> Report:
    report = Report()
    for line in path.read_text(encoding="utf-8").splitlines():
        for event, verdict, reason in judged(json.loads(line)):
            report.add(event, verdict, reason)
    return report


def print_report(name: str, report: Report) -> None:
    events = sum(counts[0] for counts in report.classes.values())
    print(f"== {name}: {events} events")
    print(f"{'class':32} {'kind':5} {'label':7} {'events':>6} {'right':>6} {'share':>6}  most given reason")
    for key in sorted(report.classes):
        total, right = report.classes[key]
        reason = report.reasons[key].most_common(1)[0][0]
        print(f"{key[0]:32} {key[1]:5} {key[2]:7} {total:6} {right:6} {right / total:6.2f}  {reason}")
    for kind, tally in report.kinds.items():
        print(f"likely-human {kind}s: precision {tally.precision:.3f} recall {tally.recall:.3f} "
              f"({tally.true_human} right, {tally.false_human} machines judged human, "
              f"{tally.missed_human} people missed)")


def main(names: list[str]) -> None:
    reports = [(name, measure(CORPUS / name if not Path(name).exists() else Path(name))) for name in names]
    for name, report in reports:
        print_report(name, report)
    for name, report in reports[1:]:
        print(f"{name}: {report.figures()}")
    print(reports[0][1].figures())


if __name__ == "__main__":
    main(sys.argv[1:] or list(SETS))
