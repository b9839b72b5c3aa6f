"""Candidate variants and the evidence behind them in SQL, for every dialect (the
LearningStore part of SQLStore; autoreply.learning decides what is evidence)."""

from __future__ import annotations

from typing import Any

from autoreply.errors import NotFoundError
from autoreply.store.base import LearningStore
from autoreply.store.core import Args, SQLCore, Tx, equal, follows, marks, record, where
from autoreply.store.records import LearnedVariant, LearningSource, VariantStatus


class LearningSQL(SQLCore):
    """The LearningStore part of SQLStore."""

    @follows(LearningStore.add_evidence)
    def add_evidence(self, new: Args) -> LearnedVariant | None:
        now = self._stamp()
        source = LearningSource(new["source"]).value
        with self._tx(write=True) as tx:
            key = (new["entry_id"], new["normalized"])
            row = tx.one(
                "SELECT id FROM learned_variants WHERE entry_id = ? AND normalized = ?", key
            )
            if row is None:
                created = tx.insert(
                    "learned_variants",
                    {
                        "entry_id": new["entry_id"],
                        "text": new["text"],
                        "normalized": new["normalized"],
                        "flag": new["flag"],
                        "first_seen": now,
                        "last_seen": now,
                    },
                    unique="(entry_id, normalized)",
                )
                # A concurrent first sighting may have won the insert: read it back.
                row = created or tx.one(
                    "SELECT id FROM learned_variants WHERE entry_id = ? AND normalized = ?", key
                )
            assert row is not None
            variant_id = int(row["id"])
            stored = tx.insert(
                "learning_evidence",
                {
                    "variant_id": variant_id,
                    "source": source,
                    "text": new["text"],
                    "conversation_id": new["conversation_id"],
                    "message_id": new["message_id"],
                    "created_at": now,
                },
                unique="(variant_id, source, message_id)",
            )
            if stored is None:
                return None
            tx.execute(
                "UPDATE learned_variants SET last_seen = ?, flag = ? WHERE id = ?",
                (now, new["flag"], variant_id),
            )
            return self._variants(tx, ["v.id = ?"], [variant_id])[0]

    def learned_variants(
        self, *, entry_id: str | None = None, status: VariantStatus | None = None
    ) -> list[LearnedVariant]:
        clauses, params = equal(**{"v.entry_id": entry_id, "v.status": status})
        with self._tx() as tx:
            return self._variants(tx, clauses, params)

    def get_learned_variant(self, variant_id: int) -> LearnedVariant:
        with self._tx() as tx:
            found = self._variants(tx, ["v.id = ?"], [variant_id])
        if not found:
            raise NotFoundError(
                f"no candidate variant {variant_id}; list them with `autoreply learn list`"
            )
        return found[0]

    def set_variant_status(
        self, variant_ids: list[int], status: VariantStatus, *, by: str | None = None
    ) -> list[LearnedVariant]:
        status = VariantStatus(status)
        pending = status is VariantStatus.PENDING
        decided = (None, None) if pending else (by, self._stamp())
        ids = list(dict.fromkeys(variant_ids))
        if not ids:
            return []
        with self._tx(write=True) as tx:
            known = {
                int(r["id"])
                for r in tx.all(f"SELECT id FROM learned_variants WHERE id IN ({marks(ids)})", ids)
            }
            missing = [i for i in ids if i not in known]
            if missing:
                raise NotFoundError(
                    f"no candidate variant {missing[0]}; list them with `autoreply learn list`"
                )
            tx.execute(
                "UPDATE learned_variants SET status = ?, decided_by = ?, decided_at = ? "
                f"WHERE id IN ({marks(ids)})",
                [status.value, *decided, *ids],
            )
            found = {v.id: v for v in self._variants(tx, [f"v.id IN ({marks(ids)})"], ids)}
        return [found[i] for i in ids]

    def _variants(self, tx: Tx, clauses: list[str], params: list[Any]) -> list[LearnedVariant]:
        rows = tx.all(
            f"SELECT v.* FROM learned_variants AS v WHERE {where(clauses)} ORDER BY v.id", params
        )
        if not rows:
            return []
        ids = [int(r["id"]) for r in rows]
        counts: dict[int, dict[str, int]] = {i: {} for i in ids}
        for r in tx.all(
            "SELECT variant_id, source, COUNT(*) AS n FROM learning_evidence "
            f"WHERE variant_id IN ({marks(ids)}) GROUP BY variant_id, source",
            ids,
        ):
            counts[int(r["variant_id"])][str(r["source"])] = int(r["n"])
        found = [record(LearnedVariant, {**r, "counts": counts[int(r["id"])]}) for r in rows]
        return sorted(found, key=lambda v: (-v.count, v.id))
