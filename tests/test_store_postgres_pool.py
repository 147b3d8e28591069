"""The PostgreSQL pool keeps a quarter of its connections for urgent work (the webhook's writes,
remediator/store/lanes.py): the worker's transactions, queued on the audit head's lock, never
hold every connection a webhook needs."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from remediator.store.lanes import urgent
from remediator.store.postgres import split_url
from remediator.store.postgres_conn import Pool, urgent_reserve


def test_the_urgent_reserve_is_a_quarter_of_the_pool_and_at_least_one() -> None:
    assert [urgent_reserve(n) for n in (1, 2, 4, 7, 10, 40)] == [0, 1, 1, 1, 2, 10]


@pytest.mark.postgres
def test_a_webhook_gets_a_connection_while_background_work_holds_all_it_may(
    pg_database: str,
) -> None:
    async def take(pool: Pool) -> int:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT 1")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def main() -> None:
        pool = Pool(split_url(pg_database)[0], size=4)
        try:
            async with contextlib.AsyncExitStack() as held:
                for _ in range(3):  # the worker's share: 4 - 1
                    await held.enter_async_context(pool.connection())
                background = asyncio.create_task(take(pool))
                await asyncio.sleep(0.3)
                assert not background.done()  # a fourth background transaction waits
                with urgent():
                    assert await asyncio.wait_for(take(pool), timeout=5.0) == 1
                assert not background.done()
            assert await asyncio.wait_for(background, timeout=5.0) == 1
        finally:
            await pool.close()

    asyncio.run(main())
