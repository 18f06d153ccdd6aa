import { expect, test } from 'bun:test'
import { freshDatabase, PG_BASE_URL, startTestServer } from './helpers.ts'

test.skipIf(!PG_BASE_URL)(
  'two instances starting together on one empty database migrate it once, without racing',
  async () => {
    const db = await freshDatabase()
    const [a, b] = await Promise.all([
      startTestServer({}, { database: db, keepDatabase: true }),
      startTestServer({}, { database: db, keepDatabase: true }),
    ])
    try {
      const applied = await a.running.gantry.store.query<{ n: number }>(
        'select count(*)::int as n from drizzle.__drizzle_migrations',
      )
      const files = (await Bun.file(`${import.meta.dir}/../migrations/meta/_journal.json`).json()).entries
        .length
      expect(applied[0]!.n).toBe(files)
      expect((await a.api('/ready', { key: null })).status).toBe(200)
      expect((await b.api('/ready', { key: null })).status).toBe(200)
      // The admin bootstrap runs under the same lock: one key, not two (and no unique-key crash).
      const keys = await a.running.gantry.store.query<{ n: number }>(
        "select count(*)::int as n from api_keys where name = 'ADMIN_API_KEY'",
      )
      expect(keys[0]!.n).toBe(1)
    } finally {
      await a.stop()
      await b.stop()
      await db.drop()
    }
  },
)
