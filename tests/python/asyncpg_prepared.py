"""asyncpg through the gateway: binary-format results, a prepared statement executed
past the point where drivers switch to server-side plans. Prints one JSON object."""
import asyncio
import json
import ssl
import sys


async def main(port, token, ca, resource):
    import asyncpg

    conn = await asyncpg.connect(
        host="127.0.0.1", port=int(port), user="alice", password=token, database=resource,
        ssl=ssl.create_default_context(cafile=ca),
    )
    rows = await conn.fetch("SELECT id, name, email, ssn FROM customers WHERE id <= $1 ORDER BY id", 3)
    stmt = await conn.prepare("SELECT id, email FROM customers WHERE id = $1")
    repeated = [tuple(await stmt.fetchrow(1)) for _ in range(8)]
    count = await conn.fetchval("SELECT count(*) FROM customers")
    await conn.close()
    print(json.dumps({"rows": [list(r) for r in rows], "repeated": repeated, "count": count}))


asyncio.run(main(*sys.argv[1:5]))
