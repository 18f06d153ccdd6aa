import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { rmSync } from 'node:fs'
import postgres from 'postgres'
import { codeReply, MODULES, planReply, tasksOnlyPluginsDir } from '../plugins/tasks/testing.ts'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { type GantryProcess, spawnGantry } from './gantry-process.ts'
import { ADMIN_KEY, freshDatabase, PG_BASE_URL, tempDir, waitFor } from './helpers.ts'

// Real server processes on one fresh Postgres database: one is killed (-9, or SIGTERM) while it runs a task,
// the other takes the task over from its checkpoint.

type Instance = Omit<GantryProcess, 'url'> & { url: string }

async function startInstance(env: Record<string, string>): Promise<Instance> {
  const dataDir = tempDir()
  const g = spawnGantry({ DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, SHUTDOWN_TIMEOUT_MS: '5000', ...env })
  g.proc.exited.then(() => rmSync(dataDir, { recursive: true, force: true }))
  return { ...g, url: await g.url(20_000) }
}

const api = async (base: string, path: string, init: RequestInit & { json?: unknown } = {}) => {
  const res = await fetch(base + path, {
    ...init,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: init.json === undefined ? undefined : JSON.stringify(init.json),
  })
  return { status: res.status, body: (await res.json()) as any }
}

describe.skipIf(!PG_BASE_URL)('task takeover between instances (needs Postgres)', () => {
  let mock: MockOllama
  let database: Awaited<ReturnType<typeof freshDatabase>>
  let sql: ReturnType<typeof postgres>
  const instances: Instance[] = []

  beforeAll(async () => {
    mock = await startMockOllama()
    database = await freshDatabase()
    sql = postgres(database.url!, { max: 2, onnotice: () => {} })
  })
  afterAll(async () => {
    for (const i of instances) i.proc.kill('SIGKILL')
    await Promise.all(instances.map((i) => i.proc.exited))
    await sql.end()
    await database.drop()
    await mock.stop()
  })

  const env = (leaseMs: number) => ({
    DATABASE_URL: database.url!,
    OLLAMA_HOST: mock.url,
    PLUGINS_DIR: tasksOnlyPluginsDir(),
    JOB_LEASE_MS: String(leaseMs),
    TASK_CONCURRENCY: '2',
  })

  /** The model: plans mathutil + stats; the first `stats` call hangs (the step in flight when killed). */
  function scriptModel(goal: string) {
    const calls = { plan: 0, mathutil: 0, stats: 0 }
    mock.script(({ body }) => {
      const text = JSON.stringify(body?.messages ?? [])
      if (!text.includes(goal)) return { error: { status: 500, message: 'unexpected prompt' } }
      if (String(body.messages[0].content).startsWith('You plan')) {
        calls.plan++
        return { content: planReply(['mathutil', 'stats']) }
      }
      const name = /Write the module (\w+)\.ts/.exec(text)![1] as 'mathutil' | 'stats'
      calls[name]++
      if (name === 'stats' && calls.stats === 1) return { content: '{"code":', hang: true }
      return { content: codeReply(MODULES[name].code, MODULES[name].tests) }
    })
    return calls
  }

  async function runUntilStatsHangs(goal: string, leaseMs: number) {
    // Only this test's two instances may share the database: the previous test's survivor goes first.
    for (const i of instances.splice(0)) {
      i.proc.kill('SIGTERM')
      await i.proc.exited
    }
    const calls = scriptModel(goal)
    const a = await startInstance(env(leaseMs))
    const b = await startInstance(env(leaseMs))
    instances.push(a, b)
    const created = await api(a.url, '/tasks', { method: 'POST', json: { prompt: goal } })
    expect(created.status).toBe(201)
    const id = created.body.task_id as string
    await waitFor(() => calls.stats === 1 && mock.activeGenerations > 0, 30_000, 'the stats generation')
    const [job] = await sql`select lease_owner, attempts from jobs where id = ${id}`
    const holderPid = Number(String(job!.lease_owner).split(':')[1])
    const holder = [a, b].find((i) => i.pid === holderPid)!
    const other = holder === a ? b : a
    expect(holder).toBeDefined()
    return { id, calls, holder, other }
  }

  async function eventsOf(id: string) {
    return sql`select seq, type, data from events where stream = ${id} order by seq`
  }

  test('kill -9 of the running instance: the other takes over after the lease, no step repeated, no seq gap', async () => {
    const goal = 'Build the statistics library that survives a crash'
    const { id, calls, holder, other } = await runUntilStatsHangs(goal, 1500)
    holder.proc.kill('SIGKILL')
    await holder.proc.exited
    const done = await waitFor(
      async () => (await api(other.url, `/tasks/${id}`)).body.status === 'completed',
      30_000,
      'the task to complete on the other instance',
    )
    expect(done).toBe(true)
    const events = await eventsOf(id)
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1)) // gap-free across both instances
    const count = (type: string, module?: string) =>
      events.filter((e) => e.type === type && (!module || (e.data as any)?.module === module)).length
    expect(count('TASK_STARTED')).toBe(1)
    expect(count('PLANNING_COMPLETE')).toBe(1)
    expect(count('MODULE_STARTED', 'mathutil.ts')).toBe(1)
    expect(count('MODULE_COMPLETE', 'mathutil.ts')).toBe(1)
    expect(count('MODULE_COMPLETE', 'stats.ts')).toBe(1)
    expect(count('TASK_COMPLETE')).toBe(1)
    expect(events.at(-1)!.type).toBe('TASK_COMPLETE')
    // Finished steps were not asked of the model again; only the one in flight was.
    expect(calls).toEqual({ plan: 1, mathutil: 1, stats: 2 })
    expect(
      events.some((e) => e.type === 'LOG' && String((e.data as any).message).startsWith('Task resumed')),
    ).toBe(true)
    // The job row closes just after the task's last event and row (the event is written first, by design).
    const job = await waitFor(
      async () => (await sql`select status, attempts from jobs where id = ${id} and status <> 'running'`)[0],
      10_000,
      'the job row to close',
    )
    expect(job).toMatchObject({ status: 'succeeded', attempts: 2 })
    const results = await api(other.url, `/tasks/${id}/results`)
    expect(results.body.modules.map((m: any) => m.quality_score)).toEqual([1, 1])
  }, 90_000)

  test('SIGTERM: the task goes back to the queue at once and the other instance continues it', async () => {
    const goal = 'Build the statistics library that survives a restart'
    // A long lease: only the release on SIGTERM (not lease expiry) can explain a quick takeover.
    const { id, calls, holder, other } = await runUntilStatsHangs(goal, 60_000)
    const t0 = performance.now()
    holder.proc.kill('SIGTERM')
    expect(await holder.proc.exited).toBe(0)
    await waitFor(
      async () => (await api(other.url, `/tasks/${id}`)).body.status === 'completed',
      20_000,
      'the task to complete on the other instance',
    )
    expect(performance.now() - t0).toBeLessThan(15_000)
    const events = await eventsOf(id)
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1))
    expect(calls).toEqual({ plan: 1, mathutil: 1, stats: 2 })
    expect(
      events.some((e) => e.type === 'LOG' && String((e.data as any).message).startsWith('Server stopping')),
    ).toBe(true)
    expect(events.filter((e) => e.type === 'TASK_FAILED' || e.type === 'TASK_CANCELLED')).toEqual([])
  }, 90_000)
})
