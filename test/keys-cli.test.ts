/**
 * `npm run keys -- create --user alice` when alice exists: the new key is alice's own (it sees her tasks),
 * and the CLI says a key was added for the existing user instead of "Created user alice".
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { freshDatabase, ROOT, startTestServer, tempDir } from './helpers.ts'

const dataDir = tempDir('gantry-keys-')
let database: Awaited<ReturnType<typeof freshDatabase>>

beforeAll(async () => {
  database = await freshDatabase()
})
afterAll(() => database.drop())

async function keys(...args: string[]) {
  const proc = Bun.spawn([process.execPath, join(ROOT, 'src/cli/keys.ts'), ...args], {
    env: {
      PATH: process.env.PATH ?? '',
      DATA_DIR: dataDir,
      ...(database.url ? { DATABASE_URL: database.url } : {}),
    },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ])
  return { out, err, code, key: out.trim().split('\n').pop() ?? '' }
}

describe('npm run keys -- create for a user that exists', () => {
  test('adds a key to the same user and says so; a different --role is refused', async () => {
    const first = await keys('create', '--user', 'alice')
    expect(first.code).toBe(0)
    expect(first.out).toContain('Created user "alice"')
    const second = await keys('create', '--user', 'alice', '--name', 'laptop')
    expect(second.code).toBe(0)
    expect(second.out).toContain('Added key')
    expect(second.out).toContain('for the existing user "alice"')
    expect(second.out).not.toContain('Created')
    expect(second.key).toMatch(/^gk_/)
    expect(second.key).not.toBe(first.key)

    const promoted = await keys('create', '--user', 'alice', '--role', 'admin')
    expect(promoted.code).toBe(2)
    expect(promoted.err).toContain('already exists as user')

    const list = (await keys('list')).out.trim().split('\n')
    expect(list.filter((line) => line.includes('\talice\t'))).toHaveLength(2)

    // Both keys are the one alice: what one creates, the other sees.
    const server = await startTestServer(
      {},
      {
        database: database.url
          ? { ...database, drop: async () => {} }
          : { pgliteDir: join(dataDir, 'pg'), drop: async () => {} },
      },
    )
    try {
      const me = async (key: string) => (await server.api('/api/me', { key })).body
      const [a, b] = [await me(first.key), await me(second.key)]
      expect(a.user).toBe('alice')
      expect(b.user_id).toBe(a.user_id)
      const made = await server.api('/tasks', { method: 'POST', key: first.key, json: { prompt: 'hello' } })
      expect(made.status).toBe(201)
      expect((await server.api(`/tasks/${made.body.task_id}`, { key: second.key })).status).toBe(200)
    } finally {
      await server.stop()
    }
  }, 60_000)
})

describe('POST /api/keys for a user that exists', () => {
  test('the key is that user’s (same user_id, same tasks); another role is a 409', async () => {
    const server = await startTestServer()
    try {
      const first = await server.api('/api/keys', { method: 'POST', json: { user: 'dora' } })
      expect(first.status).toBe(201)
      const second = await server.api('/api/keys', { method: 'POST', json: { user: 'dora', name: 'phone' } })
      expect(second.status).toBe(201)
      expect(second.body).toMatchObject({ user: 'dora', role: 'user', user_id: first.body.user_id })
      const made = await server.api('/tasks', { method: 'POST', key: first.body.key, json: { prompt: 'hi' } })
      expect((await server.api(`/tasks/${made.body.task_id}`, { key: second.body.key })).status).toBe(200)
      const promote = await server.api('/api/keys', { method: 'POST', json: { user: 'dora', role: 'admin' } })
      expect(promote.status).toBe(409)
      expect(promote.body.message).toContain('exists as user')
      const dora = (await server.api('/api/keys')).body.filter((k: { user: string }) => k.user === 'dora')
      expect(dora).toHaveLength(2)
    } finally {
      await server.stop()
    }
  }, 60_000)
})
