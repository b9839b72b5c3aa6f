"""Admin routes for phrasings learned from answered conversations (autoreply.learning):
list the candidate variants, accept them into their entries (checked, journalled, undone by
``POST /v1/admin/knowledge/undo``), dismiss them."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from autoreply import learning
from autoreply.api.admin import reload_result
from autoreply.api.auth import AdminDep
from autoreply.api.schemas import ReloadResult
from autoreply.service import resolve_knowledge_path
from autoreply.store import LearnedVariant, VariantStatus
from autoreply.web.batching import in_own_thread
from autoreply.web.errors import ERROR_RESPONSES
from autoreply.web.state import StateDep

router = APIRouter(
    prefix="/v1/admin/learning",
    tags=["admin"],
    responses={k: ERROR_RESPONSES[k] for k in (401, 403, 404, 409, 422, 429)},
)


class VariantIds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[int] = Field(min_length=1, max_length=500)
    force: bool = False
    """Accept: save despite conflict warnings."""


class LearnResult(BaseModel):
    changes: list[int]
    """Journal ids, one per entry changed (POST /v1/admin/knowledge/undo takes the newest)."""
    variants: list[LearnedVariant]
    reload: ReloadResult | None = None


@router.get("", response_model=list[LearnedVariant], summary="Learned candidate variants")
def list_variants(
    admin: AdminDep,
    state: StateDep,
    status: VariantStatus | None = VariantStatus.PENDING,
    entry_id: str | None = None,
) -> list[LearnedVariant]:
    """Candidate variants with their evidence per source (picked, agent_script, helpful,
    promote), most first; ``flag`` says why one must not be accepted blindly."""
    return state.bot.store.learned_variants(entry_id=entry_id, status=status)


@router.post("/accept", response_model=LearnResult, summary="Accept candidate variants")
async def accept(body: VariantIds, admin: AdminDep, state: StateDep) -> LearnResult:
    """Write the variants into their entries in place (only those entries' lines change),
    after the checks of ``autoreply check`` (conflicts: 422 unless ``force``), and reload."""
    bot = state.bot

    def run() -> LearnResult:
        changes = learning.accept(
            bot.store,
            bot.kb,
            body.ids,
            knowledge=resolve_knowledge_path(bot.settings.knowledge),
            reload=bot.reload,
            by=admin.name,
            force=body.force,
        )
        return LearnResult(
            changes=[c.id for c in changes],
            variants=[bot.store.get_learned_variant(i) for i in body.ids],
            reload=reload_result(bot.engine.index),
        )

    async with state.admin_lock:
        return await in_own_thread(run, name="autoreply-reload")


@router.post("/dismiss", response_model=LearnResult, summary="Dismiss candidate variants")
def dismiss(body: VariantIds, admin: AdminDep, state: StateDep) -> LearnResult:
    """Leave the variants out of the knowledge base (they stay listed as dismissed)."""
    done = learning.dismiss(state.bot.store, body.ids, by=admin.name)
    return LearnResult(changes=[], variants=done)
