"""End users' long-term memories (``/v1/memories``): list a memory's facts, add one, delete
one or all. A memory is its workspace's: another workspace's ``memory_id`` is the same 404
(``memory_not_found``) as one that holds no fact. App calls fill and read memories
(``serving.memory``); this is how an end user (through the tenant) sees and deletes them.
Every change is audited.
"""

from __future__ import annotations

from datetime import UTC, datetime

from modelgrid.core.errors import NotFoundError
from modelgrid.protocol.admin import INT64_MAX
from modelgrid.protocol.apps import MemoryDeleted, MemoryFact, MemoryObject
from modelgrid.serving.memory import check_memory_id
from modelgrid.storage import memory_rows
from modelgrid.storage.models import AppMemory
from modelgrid.tenancy import audit
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import Sessions


def memory_not_found(memory_id: str) -> NotFoundError:
    return NotFoundError(
        f"No such memory: '{memory_id[:64]}'.", param="memory_id", code="memory_not_found"
    )


def _fact(row: AppMemory) -> MemoryFact:
    return MemoryFact(id=row.id, fact=row.fact, created_at=int(aware(row.created_at).timestamp()))


def _fact_not_found(memory_id: str, fact_id: int) -> NotFoundError:
    return NotFoundError(
        f"No such fact in memory '{memory_id}': {str(fact_id)[:24]}.",
        param="fact_id",
        code="memory_fact_not_found",
    )


class MemoryAdmin:
    """A workspace's memories (see the module docstring).

    Args:
        sessions: The database.
    """

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def get(self, workspace_id: str, memory_id: str) -> MemoryObject:
        """The memory's facts, oldest first. Raises ``NotFoundError`` when it has none."""
        check_memory_id(memory_id, "memory_id")
        async with self._sessions() as session:
            rows = await memory_rows.facts(session, workspace_id, memory_id)
        if not rows:
            raise memory_not_found(memory_id)
        return MemoryObject(id=memory_id, facts=[_fact(r) for r in rows])

    async def add(
        self, workspace_id: str, memory_id: str, fact: str, *, actor: str
    ) -> MemoryObject:
        """Remember ``fact`` (one the memory holds already is not added twice)."""
        check_memory_id(memory_id, "memory_id")
        async with self._sessions() as session, session.begin():
            await memory_rows.add_facts(
                session, workspace_id, memory_id, [fact], request_id=None, now=datetime.now(UTC)
            )
            await audit.record(
                session,
                actor=actor,
                action="memory.add",
                target=f"memory:{memory_id}",
                details={"workspace_id": workspace_id},
            )
        return await self.get(workspace_id, memory_id)

    async def delete(
        self, workspace_id: str, memory_id: str, fact_id: int | None = None, *, actor: str
    ) -> MemoryDeleted:
        """Delete the memory's facts, or the one ``fact_id``.

        Raises:
            NotFoundError: no such memory, or no such fact of it.
        """
        check_memory_id(memory_id, "memory_id")
        if fact_id is not None and not 1 <= fact_id <= INT64_MAX:  # no row has it
            raise _fact_not_found(memory_id, fact_id)
        async with self._sessions() as session, session.begin():
            n = await memory_rows.delete_facts(session, workspace_id, memory_id, fact_id)
            if n == 0:
                if fact_id is not None:
                    raise _fact_not_found(memory_id, fact_id)
                raise memory_not_found(memory_id)
            await audit.record(
                session,
                actor=actor,
                action="memory.delete",
                target=f"memory:{memory_id}",
                details={"workspace_id": workspace_id, "fact_id": fact_id, "facts": n},
            )
        if fact_id is not None:
            return MemoryDeleted(id=memory_id, object="memory.fact.deleted", facts=n)
        return MemoryDeleted(id=memory_id, facts=n)


__all__ = ["MemoryAdmin", "memory_not_found"]
