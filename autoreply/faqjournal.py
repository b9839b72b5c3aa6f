"""The journal of changes written into a knowledge folder, and undo.

``.autoreply-journal/`` in the knowledge folder (hidden, so never loaded as knowledge) holds
one JSON record per change (``000001.json``: when, who, what, which file, which entry, the
file's sha256 after the change, the gap topic, FAQ candidate or learned variants it came
from) and the file's bytes before it (``000001.before``; none when the change created the
file). ``undo`` puts the newest change still in effect back byte for byte, only if the file
is still exactly as the change left it, and reopens its topic, candidate or variants.
Records are kept, marked undone.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoreply.errors import ConflictError
from autoreply.faqwrite import write_atomic
from autoreply.models import CandidateStatus
from autoreply.store import Store, TopicStatus, VariantStatus

JOURNAL_DIR = ".autoreply-journal"


def whoami() -> str:
    """The user name of this process (who ran the CLI)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def knowledge_folder(knowledge: Path) -> Path:
    return knowledge if knowledge.is_dir() else knowledge.parent


@dataclass(frozen=True)
class Change:
    """One journalled write into a knowledge file."""

    id: int
    at: str
    by: str
    action: str
    file: str
    entry_id: str
    after_sha256: str
    created: bool
    """The file did not exist before (undo deletes it)."""
    topic_id: int | None = None
    candidate_id: int | None = None
    variant_ids: list[int] | None = None
    """Learned variants it wrote into the entry (undo makes them pending again)."""
    undone_at: str | None = None
    undone_by: str | None = None


class Journal:
    """Every change written into a knowledge folder, newest last, and how to take it back."""

    def __init__(self, knowledge: Path) -> None:
        self.folder = knowledge_folder(Path(knowledge)) / JOURNAL_DIR

    def _path(self, change_id: int, kind: str) -> Path:
        return self.folder / f"{change_id:06d}.{kind}"

    def changes(self) -> list[Change]:
        """All changes, newest first."""
        if not self.folder.is_dir():
            return []
        found = [Change(**json.loads(p.read_text("utf-8"))) for p in self.folder.glob("*.json")]
        return sorted(found, key=lambda c: c.id, reverse=True)

    def record(
        self, path: Path, before: bytes | None, after: bytes, *, action: str, entry_id: str, by: str
    ) -> Change:
        self.folder.mkdir(parents=True, exist_ok=True)
        latest = self.changes()
        change = Change(
            id=latest[0].id + 1 if latest else 1,
            at=datetime.now(UTC).isoformat(timespec="seconds"),
            by=by,
            action=action,
            file=str(Path(path).resolve()),
            entry_id=entry_id,
            after_sha256=hashlib.sha256(after).hexdigest(),
            created=before is None,
        )
        if before is not None:
            self._path(change.id, "before").write_bytes(before)
        return self._save(change)

    def update(self, change: Change, **fields: Any) -> Change:
        return self._save(Change(**(change.__dict__ | fields)))

    def _save(self, change: Change) -> Change:
        text = json.dumps(change.__dict__, ensure_ascii=False, indent=2) + "\n"
        write_atomic(self._path(change.id, "json"), text.encode("utf-8"))
        return change

    def undo(self, *, by: str = "", store: Store | None = None) -> Change:
        """Put the newest change not undone yet back: the file's exact bytes before it (or no
        file), and its gap topic open again. ConflictError if the file changed since."""
        pending = [c for c in self.changes() if c.undone_at is None]
        if not pending:
            raise ConflictError("nothing to undo: no change in the journal is still in effect")
        change = pending[0]
        path = Path(change.file)
        now = path.read_bytes() if path.exists() else b""
        if hashlib.sha256(now).hexdigest() != change.after_sha256:
            raise ConflictError(
                f"{path} changed after change {change.id} ({change.action} '{change.entry_id}'); "
                "undoing it would lose that; edit the file by hand"
            )
        before = None if change.created else self._path(change.id, "before").read_bytes()
        write_atomic(path, before)
        if change.topic_id is not None and store is not None:
            store.set_gap_topic_status(change.topic_id, TopicStatus.OPEN)
        if change.candidate_id is not None and store is not None:
            store.set_candidate_status(change.candidate_id, CandidateStatus.PENDING)
        if change.variant_ids and store is not None:
            store.set_variant_status(change.variant_ids, VariantStatus.PENDING)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        return self.update(change, undone_at=stamp, undone_by=by or whoami())
