/**
 * `npm run db:backup` / `db:restore` for the embedded database: a backup taken from a running server (which
 * holds the database) restores into a fresh DATA_DIR with every task, session and event, row for row, and a
 * server started there serves them. Also the refusals: overwriting, restoring under a running server, Postgres.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { spawnGantry } from './gantry-process.ts'
import {
  ADMIN_KEY,
  freeLoopbackPort,
  PG_BASE_URL,
  ROOT,
  startTestServer,
  tempDir,
  waitFor,
} from './helpers.ts'

let mock: MockOllama
beforeAll(async () => {
  mock = await startMockOllama()
})
afterAll(() => mock.stop(), 30_000)

async function cli(env: Record<string, string>, ...args: string[]) {
  const proc = Bun.spawn([process.execPath, join(ROOT, 'src/cli/backup.ts'), ...args], {
    cwd: env.DATA_DIR,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ])
  return { out, err, code }
}

/** Every row that matters, in a stable order: what a restore must bring back exactly. */
async function contents(pgDir: string) {
  const pg = await PGlite.create(pgDir)
  try {
    const rows = async (text: string) => (await pg.query(text)).rows
    return {
      users: await rows('select id, name, role from users order by id'),
      tasks: await rows('select * from tasks order by id'),
      modules: await rows('select * from task_modules order by task_id, position'),
      sessions: await rows('select * from chat_sessions order by id'),
      messages: await rows('select * from chat_messages order by id'),
      streams: await rows('select * from event_streams order by id'),
      events: await rows('select * from events order by stream, seq'),
    }
  } finally {
    await pg.close()
  }
}

describe('npm run db:backup and db:restore (embedded database)', () => {
  test('a backup from a running server restores into a fresh DATA_DIR with every task, session and event', async () => {
    // Each holds a whole database: removed here rather than left to the suite's final sweep.
    const dirs: string[] = []
    const folder = (prefix: string) => {
      dirs.push(tempDir(prefix))
      return dirs.at(-1)!
    }
    const source = folder('gantry-backup-src-')
    const port = freeLoopbackPort()
    const server = spawnGantry({
      DATA_DIR: source,
      PORT: String(port),
      ADMIN_API_KEY: ADMIN_KEY,
      OLLAMA_HOST: mock.url,
      CODE_EXECUTION: 'off',
    })
    const url = await server.url()
    const api = async (path: string, init: RequestInit = {}) => {
      const res = await fetch(url + path, {
        ...init,
        headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      })
      return { status: res.status, body: (await res.json()) as any }
    }
    let stopped = false
    try {
      const ids: string[] = []
      for (const prompt of ['Build an email validator', 'Check palindromes']) {
        const res = await api('/tasks', { method: 'POST', body: JSON.stringify({ prompt }) })
        expect(res.status).toBe(201)
        ids.push(res.body.task_id)
      }
      expect((await api('/api/sessions', { method: 'POST', body: '{"name":"demo"}' })).status).toBe(201)
      const chat = { message: 'Why is the sky blue?' }
      expect(
        (await api('/api/sessions/demo/chat', { method: 'POST', body: JSON.stringify(chat) })).status,
      ).toBe(202)
      for (const id of ids)
        await waitFor(async () => (await api(`/tasks/${id}`)).body.status === 'completed', 30_000, id)
      await waitFor(
        async () => (await api('/api/sessions/demo/messages')).body.messages.at(-1)?.status === 'complete',
        30_000,
        'the answer',
      )

      const env = { DATA_DIR: source, PORT: String(port), GANTRY_KEY: ADMIN_KEY }
      const made = await cli(env, 'backup', 'snapshot.tar.gz')
      expect(made.err).toBe('')
      expect(made.code).toBe(0)
      expect(made.out).toContain(`from the running server (pid ${server.pid})`)
      const again = await cli(env, 'backup', 'snapshot.tar.gz')
      expect(again.code).toBe(2)
      expect(again.err).toContain('exists')
      const noKey = await cli({ DATA_DIR: source, PORT: String(port) }, 'backup', 'other.tar.gz')
      expect(noKey.code).toBe(2)
      expect(noKey.err).toContain('admin key')

      server.proc.kill('SIGTERM')
      expect(await server.exit()).toBe(0)
      stopped = true

      const target = folder('gantry-backup-dst-')
      const restored = await cli({ DATA_DIR: target }, 'restore', join(source, 'snapshot.tar.gz'))
      expect(restored.err).toBe('')
      expect(restored.code).toBe(0)
      expect(restored.out).toContain('2 tasks, 1 chat sessions')
      const before = await contents(join(source, 'pg'))
      expect(before.tasks).toHaveLength(2)
      expect(before.events.length).toBeGreaterThan(20)
      expect(await contents(join(target, 'pg'))).toEqual(before)

      // Over an existing database only with --force, and never under a running server.
      const refused = await cli({ DATA_DIR: target }, 'restore', join(source, 'snapshot.tar.gz'))
      expect(refused.code).toBe(2)
      expect(refused.err).toContain('--force')

      const revived = await startTestServer(
        { CODE_EXECUTION: 'off', OLLAMA_HOST: mock.url },
        { database: { pgliteDir: join(target, 'pg'), drop: async () => {} } },
      )
      try {
        const tasks = (await revived.api('/tasks')).body.tasks.map((t: { task_id: string }) => t.task_id)
        expect(tasks.sort()).toEqual([...ids].sort())
        const results = await revived.api(`/tasks/${ids[0]}/results`)
        expect(results.body.modules.map((m: { name: string }) => m.name)).toEqual([
          'validator.ts',
          'normalize.ts',
        ])
        const messages = (await revived.api('/api/sessions/demo/messages')).body.messages
        expect(messages.at(-1).content).toContain('Why is the sky blue?')
        for (const stream of before.streams as { id: string; head: number }[]) {
          const events = await revived.running.gantry.events.readSince(stream.id, 0, 10_000)
          expect(events.map((e) => e.seq)).toEqual(Array.from({ length: stream.head }, (_, i) => i + 1))
        }
        // A backup taken while an answer streams in is consistent: every stream's head is its last event.
        mock.enqueue({ content: 'word '.repeat(300), tokensPerSecond: 150 })
        const asked = await revived.api('/api/sessions/demo/chat', {
          method: 'POST',
          json: { message: 'Talk' },
        })
        expect(asked.status).toBe(202)
        const sessionId = (await revived.api('/api/sessions/demo')).body.session_id
        await waitFor(async () => (await revived.running.gantry.events.head(sessionId)) > 6, 10_000, 'tokens')
        const revivedPort = new URL(revived.url).port
        const during = await cli(
          { DATA_DIR: target, PORT: revivedPort, GANTRY_KEY: ADMIN_KEY },
          'backup',
          'during.tar.gz',
        )
        expect(during.code).toBe(0)
        const third = folder('gantry-backup-during-')
        expect((await cli({ DATA_DIR: third }, 'restore', join(target, 'during.tar.gz'))).code).toBe(0)
        await waitFor(
          async () => (await revived.api('/api/sessions/demo')).body.generating === false,
          30_000,
          'the answer',
        )
        const snapshot = await PGlite.create(join(third, 'pg'))
        try {
          const heads = await snapshot.query<{ id: string; head: number; n: number; last: number }>(
            `select s.id, s.head, count(e.seq)::int as n, coalesce(max(e.seq), 0)::int as last
               from event_streams s left join events e on e.stream = s.id group by s.id, s.head`,
          )
          for (const row of heads.rows)
            expect([row.id, row.n, row.last]).toEqual([row.id, row.head, row.head])
          const caught = heads.rows.find((row) => row.id === sessionId)!.head
          // Taken mid-answer: the live stream went on after the snapshot.
          expect(caught).toBeLessThan(await revived.running.gantry.events.head(sessionId))
        } finally {
          await snapshot.close()
        }

        const busy = await cli({ DATA_DIR: target }, 'restore', '--force', join(source, 'snapshot.tar.gz'))
        expect(busy.code).toBe(2)
        expect(busy.err).toContain('stop it first')
      } finally {
        await revived.stop()
      }

      // With no server running, the backup is read from the folder itself.
      const direct = await cli({ DATA_DIR: source }, 'backup', 'offline.tar.gz')
      expect(direct.code).toBe(0)
      expect(direct.out).toContain('from the folder')
    } finally {
      if (!stopped) server.proc.kill('SIGKILL')
      await server.exit()
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
    }
  }, 180_000)

  test('Postgres: the CLI points at pg_dump; the admin route answers 409 there, 403 to non-admins', async () => {
    const pg = await cli(
      { DATABASE_URL: 'postgres://gantry@127.0.0.1:1/gantry', DATA_DIR: tempDir() },
      'backup',
    )
    expect(pg.code).toBe(2)
    expect(pg.err).toContain('pg_dump -Fc')
    const server = await startTestServer()
    try {
      const res = await fetch(`${server.url}/api/admin/backup`, {
        headers: { authorization: `Bearer ${ADMIN_KEY}` },
      })
      if (PG_BASE_URL) {
        expect(res.status).toBe(409)
        expect(((await res.json()) as { message: string }).message).toContain('pg_dump')
      } else {
        expect(res.status).toBe(200)
        expect(res.headers.get('content-type')).toBe('application/gzip')
        expect(new Uint8Array(await res.arrayBuffer()).subarray(0, 2)).toEqual(new Uint8Array([0x1f, 0x8b]))
      }
      const user = await server.api('/api/keys', { method: 'POST', json: { user: 'mallory' } })
      const denied = await server.api('/api/admin/backup', { key: user.body.key })
      expect(denied.status).toBe(403)
    } finally {
      await server.stop()
    }
  }, 60_000)
})
