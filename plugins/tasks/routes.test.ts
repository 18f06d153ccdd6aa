import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { StoredEvent } from '../../src/core/events.ts'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { createUserKey, startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'
import { createTask } from './service.ts'
import { eventsOf, finished, routeByGoal, straight, tasksOnlyPluginsDir, types } from './testing.ts'

const PLUGINS_DIR = tasksOnlyPluginsDir()

// Bad input, ownership, deletion, and the settings that change how a task runs. Ollama here is unreachable
// (port 9) unless a test says otherwise, so queued tasks fail fast without a model.
let server: TestServer
let bob: string

beforeAll(async () => {
  server = await startTestServer({
    PLUGINS_DIR,
    TASK_CONCURRENCY: '2',
  })
  bob = (await createUserKey(server, 'bob')).key
}, 30_000)
afterAll(() => server.stop(), 30_000)

const post = (path: string, json: unknown, key?: string) => server.api(path, { method: 'POST', json, key })

describe('POST /tasks refuses bad input with 422 and says what is wrong', () => {
  const cases: [string, unknown][] = [
    ['empty prompt', { prompt: '' }],
    ['blank prompt', { prompt: '   ' }],
    ['100,000-character prompt', { prompt: 'x'.repeat(100_000) }],
    ['answers not a list', { prompt: 'ok', answers: 'yes' }],
    ['answers holding non-strings', { prompt: 'ok', answers: ['a', 2, null] }],
    ['unknown fields', { prompt: 'ok', priority: 'high' }],
    ['max_iterations 0', { prompt: 'ok', max_iterations: 0 }],
    ['max_iterations 1,000', { prompt: 'ok', max_iterations: 1000 }],
    ['max_iterations not an integer', { prompt: 'ok', max_iterations: 2.5 }],
    ['no prompt', { answers: [] }],
  ]
  for (const [name, body] of cases)
    test(name, async () => {
      const res = await post('/tasks', body)
      expect(res.status).toBe(422)
      expect(typeof res.body.error).toBe('string')
      expect(typeof res.body.message).toBe('string')
    })

  test('no task was created by any of them', async () => {
    const res = await server.api('/tasks')
    expect(res.body.tasks).toEqual([])
  })
})

test('a task that cannot be stored leaves nothing behind: its stream, task and job are one statement', async () => {
  const { gantry } = server.running
  const [owner] = await gantry.store.query<{ id: string }>(`select id from users limit 1`)
  const user = {
    userId: owner!.id,
    userName: 'admin',
    role: 'admin',
    keyId: null,
    keyName: null,
    via: 'api_key',
  }
  const count = async () =>
    (
      await gantry.store.query<{ n: number }>(
        `select (select count(*) from event_streams)::int + (select count(*) from jobs)::int
                + (select count(*) from tasks)::int as n`,
      )
    )[0]!.n
  const before = await count()
  // Past the integer column: the stream's and the job's inserts would have gone through on their own.
  await expect(
    createTask(gantry, user as Parameters<typeof createTask>[1], { prompt: 'x', max_iterations: 2 ** 31 }),
  ).rejects.toThrow()
  expect(await count()).toBe(before)
})

describe('task ids', () => {
  let id: string
  beforeAll(async () => {
    const res = await post('/tasks', { prompt: 'Build something for ownership checks' }, bob)
    expect(res.status).toBe(201)
    id = res.body.task_id
  })

  test('unknown ids are 404 on every route', async () => {
    for (const [method, path, json] of [
      ['GET', '/tasks/task-nope'],
      ['GET', '/tasks/task-nope/results'],
      ['POST', '/tasks/task-nope/cancel'],
      ['POST', '/tasks/task-nope/interventions', { guidance: 'x' }],
      ['DELETE', '/tasks/task-nope'],
    ] as const) {
      const res = await server.api(path, { method, json })
      expect(res.status).toBe(404)
      expect(res.body.error).toBe('not_found')
    }
  })

  test("another user's task is 404 for a non-admin, visible to its owner and admins", async () => {
    const alice = (await createUserKey(server, 'alice')).key
    expect((await server.api(`/tasks/${id}`, { key: alice })).status).toBe(404)
    expect((await server.api(`/tasks/${id}/results`, { key: alice })).status).toBe(404)
    expect((await post(`/tasks/${id}/cancel`, undefined, alice)).status).toBe(404)
    expect((await post(`/tasks/${id}/interventions`, { guidance: 'x' }, alice)).status).toBe(404)
    expect((await server.api(`/tasks/${id}`, { key: bob })).status).toBe(200)
    expect((await server.api(`/tasks/${id}`)).status).toBe(200) // admin
    const mine = await server.api('/tasks', { key: alice })
    expect(mine.body.tasks).toEqual([])
    const bobs = await server.api('/v1/tasks', { key: bob })
    expect(bobs.body.tasks.map((t: { task_id: string }) => t.task_id)).toContain(id)
  })

  test('empty guidance is 422; unknown fields too', async () => {
    expect((await post(`/tasks/${id}/interventions`, { guidance: '' }, bob)).status).toBe(422)
    expect((await post(`/tasks/${id}/interventions`, { guidance: '  ' }, bob)).status).toBe(422)
    expect((await post(`/tasks/${id}/interventions`, { guidance: 'x', extra: 1 }, bob)).status).toBe(422)
    expect((await post(`/tasks/${id}/interventions`, {}, bob)).status).toBe(422)
  })

  test('a finished task: double cancel 409, intervention 409, then DELETE removes it with its events', async () => {
    // Ollama is unreachable here, so the task fails (after its retries) — a finished task.
    await waitFor(
      async () => (await server.api(`/tasks/${id}`, { key: bob })).body.status === 'failed',
      20_000,
    )
    expect((await post(`/tasks/${id}/cancel`, undefined, bob)).status).toBe(409)
    expect((await post(`/tasks/${id}/cancel`, undefined, bob)).status).toBe(409)
    const steer = await post(`/tasks/${id}/interventions`, { guidance: 'try harder' }, bob)
    expect(steer.status).toBe(409)
    expect(steer.body.message).toContain('failed')
    expect((await eventsOf(server, id)).length).toBeGreaterThan(0)
    const del = await server.api(`/tasks/${id}`, { method: 'DELETE', key: bob })
    expect(del.status).toBe(200)
    expect(del.body).toEqual({ deleted: id })
    expect((await server.api(`/tasks/${id}`, { key: bob })).status).toBe(404)
    expect(await server.running.gantry.events.streamInfo(id)).toBeUndefined()
    expect(await server.running.gantry.store.query('select 1 from jobs where id = $1', [id])).toEqual([])
    expect((await server.api(`/tasks/${id}`, { method: 'DELETE', key: bob })).status).toBe(404)
  }, 30_000)

  test('Ollama unreachable: retried with backoff, then TASK_FAILED naming OLLAMA_HOST', async () => {
    const res = await post('/tasks', { prompt: 'Build with no Ollama' })
    const events = await finished(server, res.body.task_id)
    const failed = events.at(-1)!
    expect(failed.type).toBe('TASK_FAILED')
    expect((failed.data as { reason: string }).reason).toContain('OLLAMA_HOST')
    expect((failed.data as { reason: string }).reason).toContain('http://127.0.0.1:9')
    const retries = events.filter(
      (e) => e.type === 'LOG' && String((e.data as { message: string }).message).includes('unreachable'),
    )
    expect(retries.length).toBe(3)
  }, 30_000)

  test('a queued task is cancelled at once; a running one cannot be deleted', async () => {
    // Both runner slots busy with tasks that wait on a hung model; the third stays queued.
    const mock = await startMockOllama()
    const hung = await startTestServer({
      PLUGINS_DIR,
      OLLAMA_HOST: mock.url,
      TASK_CONCURRENCY: '1',
      LOG_LEVEL: 'warn',
    })
    try {
      mock.script(() => ({ content: '{}', hang: true }))
      const first = (await hung.api('/tasks', { method: 'POST', json: { prompt: 'hold the slot' } })).body
        .task_id
      await waitFor(async () => (await hung.api(`/tasks/${first}`)).body.status === 'running')
      const second = (await hung.api('/tasks', { method: 'POST', json: { prompt: 'wait in line' } })).body
        .task_id
      expect((await hung.api(`/tasks/${second}`)).body.status).toBe('queued')
      const del = await hung.api(`/tasks/${first}`, { method: 'DELETE' })
      expect(del.status).toBe(409)
      const cancel = await hung.api(`/tasks/${second}/cancel`, { method: 'POST' })
      expect(cancel.status).toBe(200)
      expect(cancel.body.status).toBe('cancelled')
      expect(types(await eventsOf(hung, second))).toEqual(['TASK_CANCELLED'])
      expect((await hung.api(`/tasks/${second}/cancel`, { method: 'POST' })).status).toBe(409)
      expect((await hung.api(`/tasks/${first}/cancel`, { method: 'POST' })).status).toBe(202)
      await finished(hung, first, 5000)
    } finally {
      await hung.stop()
      await mock.stop()
    }
  }, 30_000)
})

describe('CODE_EXECUTION', () => {
  let mock: MockOllama
  beforeAll(async () => {
    mock = await startMockOllama()
    routeByGoal(mock).on('Build the adder', straight(['mathutil']))
  })
  afterAll(() => mock.stop())

  /** A server with these settings runs one adder task to its end; `check` sees the server, the id and the events. */
  async function adderTask(
    env: Record<string, string>,
    check: (s: TestServer, id: string, events: StoredEvent[]) => void | Promise<void>,
  ) {
    const s = await startTestServer({ PLUGINS_DIR, OLLAMA_HOST: mock.url, ...env })
    try {
      const id = (await s.api('/tasks', { method: 'POST', json: { prompt: 'Build the adder' } })).body.task_id
      await check(s, id, await finished(s, id))
    } finally {
      await s.stop()
    }
  }

  test('sandbox without bubblewrap: says so at start and in the failure reason', async () => {
    await adderTask({ SANDBOX_BWRAP: '/nonexistent/bwrap' }, (s, _id, events) => {
      expect(s.log.raw()).toContain('bubblewrap')
      expect(events.at(-1)!.type).toBe('TASK_FAILED')
      expect((events.at(-1)!.data as { reason: string }).reason).toContain('CODE_EXECUTION=sandbox')
    })
  }, 30_000)

  test('off: code is written, tests are not run, quality is null', async () => {
    await adderTask({ CODE_EXECUTION: 'off' }, async (s, id, events) => {
      expect(types(events)).toEqual([
        'TASK_STARTED',
        'PLANNING_COMPLETE',
        'MODULE_STARTED',
        'MODULE_ITERATION',
        'MODULE_COMPLETE',
        'TASK_COMPLETE',
      ])
      const results = await s.api(`/tasks/${id}/results`)
      expect(results.body.modules[0].quality_score).toBeNull()
      expect(results.body.modules[0].code).toContain('export const add')
      expect(results.body.modules[0].test_report).toBeNull()
    })
  }, 30_000)

  test('unsandboxed: runs the tests with limits alone', async () => {
    await adderTask({ CODE_EXECUTION: 'unsandboxed' }, (s, _id, events) => {
      expect(s.log.raw()).toContain('CODE_EXECUTION=unsandboxed')
      expect(types(events)).toContain('TEST_PASSED')
    })
  }, 30_000)
})
