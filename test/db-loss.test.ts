/** The database lost while running: 503s with a JSON reason, the process stays up, and recovers by itself. */
import { afterAll, describe, expect, test } from 'bun:test'
import { freshDatabase, PG_BASE_URL, startTestServer, type TestServer, waitFor } from './helpers.ts'
import { startTcpProxy } from './tcp-proxy.ts'

describe.skipIf(!PG_BASE_URL)('database lost mid-run (real Postgres behind a cuttable proxy)', () => {
  let server: TestServer | undefined
  let proxy: Awaited<ReturnType<typeof startTcpProxy>> | undefined
  afterAll(async () => {
    proxy?.restore()
    await server?.stop()
    proxy?.stop()
  })

  test('ready → 503 while the database is gone → ready again, no restart', async () => {
    const db = await freshDatabase()
    const real = new URL(db.url!)
    proxy = await startTcpProxy({ host: real.hostname, port: Number(real.port || 5432) })
    const viaProxy = new URL(db.url!)
    viaProxy.port = String(proxy.port)
    server = await startTestServer({}, { database: { ...db, url: viaProxy.toString() } })
    expect((await server.api('/ready', { key: null })).status).toBe(200)
    // A task to read back: GET /tasks/:id runs a prepared statement, which must survive the new connections.
    const task = (await server.api('/tasks', { method: 'POST', json: { prompt: 'read me back' } })).body
      .task_id
    await waitFor(
      async () => (await server!.api(`/tasks/${task}`)).body.status === 'failed',
      10_000,
      'the task',
    )

    proxy.cut()
    const ready = await waitFor(
      async () => {
        const r = await server!.api('/ready', { key: null })
        return r.status === 503 ? r : undefined
      },
      10_000,
      '/ready to say 503',
    )
    expect(ready.body).toMatchObject({ status: 'unavailable', database: 'down' })
    // A request that needs the database gets a 503 with a JSON reason, not a 500 or a hang.
    const needsDb = await server.api('/api/me', { key: 'gk_99999999_not-cached-so-it-needs-the-db' })
    expect(needsDb.status).toBe(503)
    expect(needsDb.body.error).toBe('database_unavailable')
    expect(needsDb.headers.get('retry-after')).toBe('5')
    const taskWhileDown = await server.api(`/tasks/${task}`)
    expect(taskWhileDown.status).toBe(503)
    expect(taskWhileDown.body.error).toBe('database_unavailable')
    expect((await server.api('/health', { key: null })).status).toBe(200)

    proxy.restore()
    await waitFor(async () => (await server!.api('/ready', { key: null })).status === 200, 15_000, 'recovery')
    const keys = await server.api('/api/keys')
    expect(keys.status).toBe(200)
    expect((await server.api(`/tasks/${task}`)).body).toMatchObject({ task_id: task, status: 'failed' })
    expect(server.log.raw()).toContain('database unavailable')
  })
})
