// TASK_TTL_DAYS: finished tasks older than it are deleted with their modules, job, events and log; queued
// and running tasks never are. The default simulator is the model, so the tasks really ran.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { freshDatabase, startTestServer, type TestServer, tempDir, waitFor } from '../../test/helpers.ts'
import { purgeOldTasks } from './retention.ts'
import { finished, tasksOnlyPluginsDir, waitForEvent } from './testing.ts'

const PLUGINS_DIR = tasksOnlyPluginsDir()
const DAY = 86_400_000
let mock: MockOllama

beforeAll(async () => {
  mock = await startMockOllama()
  // One goal the model never finishes answering: its task stays running.
  mock.script(({ body }) =>
    JSON.stringify(body.messages).includes('never ends') ? { hang: true } : undefined,
  )
})
afterAll(() => mock.stop())

const env = (ttl: string) => ({
  PLUGINS_DIR,
  OLLAMA_HOST: mock.url,
  OLLAMA_MODEL: 'llama3.2',
  CODE_EXECUTION: 'off',
  TASK_TTL_DAYS: ttl,
})

async function startTask(server: TestServer, prompt: string): Promise<string> {
  const res = await server.api('/tasks', { method: 'POST', json: { prompt } })
  expect(res.status).toBe(201)
  return res.body.task_id
}

/** Moves a task's finish (or, for an unfinished one, its creation) into the past. */
async function age(server: TestServer, id: string, days: number, column = 'finished_at') {
  await server.running.gantry.store.query(
    `update tasks set ${column} = now() - make_interval(days => $2::int) where id = $1`,
    [id, days],
  )
}

async function footprint(server: TestServer, id: string) {
  const count = async (text: string) =>
    Number((await server.running.gantry.store.query<{ n: number }>(text, [id]))[0]?.n)
  return {
    task: (await server.api(`/tasks/${id}`)).status,
    streams: await count('select count(*)::int as n from event_streams where id = $1'),
    modules: await count('select count(*)::int as n from task_modules where task_id = $1'),
    jobs: await count('select count(*)::int as n from jobs where id = $1'),
    eventRows: await count('select count(*)::int as n from events where stream = $1'),
  }
}

describe('task retention', () => {
  test('deletes finished tasks past TASK_TTL_DAYS with everything they own; keeps newer and unfinished ones', async () => {
    const server = await startTestServer(env('7'))
    try {
      const old = await startTask(server, 'Build an email validator')
      const recent = await startTask(server, 'Check palindromes')
      const running = await startTask(server, 'A job that never ends')
      await finished(server, old)
      await finished(server, recent)
      await waitForEvent(server, running, 'TASK_STARTED')
      const before = await footprint(server, old)
      expect(before).toMatchObject({ task: 200, streams: 1, modules: 2, jobs: 1 })
      expect(before.eventRows).toBeGreaterThan(5)
      await age(server, old, 10)
      await age(server, recent, 3)
      await age(server, running, 30, 'created_at')

      expect(await purgeOldTasks(server.running.gantry)).toBe(1)
      expect(await footprint(server, old)).toEqual({
        task: 404,
        streams: 0,
        modules: 0,
        jobs: 0,
        eventRows: 0,
      })
      expect((await footprint(server, recent)).modules).toBe(1)
      expect((await server.api(`/tasks/${running}`)).body.status).toBe('running')

      // A month on, the recent one is old too; the running task is still never touched.
      expect(await purgeOldTasks(server.running.gantry, new Date(Date.now() + 30 * DAY))).toBe(1)
      expect((await footprint(server, recent)).task).toBe(404)
      expect((await server.api(`/tasks/${running}`)).status).toBe(200)

      // TASK_TTL_DAYS=0 keeps everything.
      const keepAll = {
        ...server.running.gantry,
        config: { ...server.running.gantry.config, taskTtlDays: 0 },
      }
      const another = await startTask(server, 'FizzBuzz')
      await finished(server, another)
      await age(server, another, 1000)
      expect(await purgeOldTasks(keepAll as never)).toBe(0)
      expect((await server.api(`/tasks/${another}`)).status).toBe(200)
    } finally {
      await server.stop()
    }
  }, 90_000)

  test('the plugin sweeps by itself: a server that starts with old finished tasks deletes them', async () => {
    // On disk (or a Postgres database of its own), so that it outlives the first server.
    const fresh = await freshDatabase()
    const database = fresh.url ? fresh : { pgliteDir: tempDir('gantry-retention-pg-'), drop: async () => {} }
    // The first server keeps everything (TTL 0), so that its own sweep cannot take the task on a slow machine.
    const first = await startTestServer(env('0'), { database, keepDatabase: true })
    let id: string
    try {
      id = await startTask(first, 'Build a todo list')
      await finished(first, id)
      await age(first, id, 8)
    } finally {
      await first.stop()
    }
    const second = await startTestServer(env('7'), { database })
    try {
      expect((await second.api(`/tasks/${id}`)).status).toBe(200)
      // The row goes in the sweep's transaction, the stream and the log line after it: wait for the line.
      await waitFor(
        async () => second.log.records().some((r) => r.msg === 'old finished tasks deleted'),
        30_000,
        'the sweep',
      )
      expect((await second.api(`/tasks/${id}`)).status).toBe(404)
    } finally {
      await second.stop()
    }
  }, 90_000)
})
