import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startTestServer, type TestServer, tempDir, waitFor } from '../../test/helpers.ts'
import type { Store } from './db.ts'
import {
  abortReasonOf,
  type ClaimedJob,
  claimJobs,
  enqueueJob,
  getJob,
  type JobContext,
  type JobHandler,
  JobRunner,
  LeaseLostError,
  requestJobCancel,
  ringJobsSoon,
} from './jobs.ts'

let server: TestServer
let store: Store
let ownerId: string
const runners: JobRunner[] = []

beforeAll(async () => {
  // No plugins: this is the core queue on its own.
  server = await startTestServer({ PLUGINS_DIR: tempDir('gantry-noplugins-') })
  store = server.running.gantry.store
  const [admin] = await store.query<{ id: string }>(`select id from users limit 1`)
  ownerId = admin!.id
}, 30_000)
afterAll(async () => {
  for (const r of runners) await r.stop()
  await server.stop()
}, 30_000)

let counter = 0
const uniqueKind = () => `test-${++counter}-${Math.random().toString(36).slice(2, 6)}`
const newId = () => `job-${++counter}-${Math.random().toString(36).slice(2, 8)}`

function runner(
  kind: string,
  handler: JobHandler,
  opts: Partial<ConstructorParameters<typeof JobRunner>[2]> = {},
) {
  const r = new JobRunner(store, server.running.gantry.log, {
    kind,
    concurrency: 2,
    handler,
    leaseMs: 1000,
    pollMs: 60_000, // wake-ups must come from the doorbell unless a test says otherwise
    ...opts,
  })
  runners.push(r)
  return r
}

const untilAborted = (signal: AbortSignal) =>
  new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason)
    signal.addEventListener('abort', () => reject(signal.reason), { once: true })
  })

describe('job queue', () => {
  test('an enqueued job is claimed through the doorbell and succeeds', async () => {
    const kind = uniqueKind()
    const seen: ClaimedJob[] = []
    const r = runner(kind, async (job) => {
      seen.push(job)
    })
    await r.start()
    const id = newId()
    const t0 = Date.now()
    await enqueueJob(store, { id, kind, ownerId, payload: { hello: 'world' } })
    await waitFor(async () => (await getJob(store, id))?.status === 'succeeded', 3000, 'job to succeed')
    expect(Date.now() - t0).toBeLessThan(2000) // the poll is a minute: only the NOTIFY can explain this
    expect(seen).toHaveLength(1)
    expect(seen[0]!.payload).toEqual({ hello: 'world' })
    expect(seen[0]!.attempts).toBe(1)
    expect(seen[0]!.checkpoint).toBeNull()
    await r.stop()
  })

  test('enqueues ring the doorbell coalesced, and every job is still claimed through it', async () => {
    // NOTIFY commits queue on one database-wide lock through their WAL flush: a ring per enqueue put every
    // enqueue in one line. While a ring is in flight, more enqueues make one more ring after it.
    const kind = uniqueKind()
    let rings = 0
    const counting: Store = {
      ...store,
      notify: (channel, payload) => {
        rings++
        return store.notify(channel, payload)
      },
    }
    const done: string[] = []
    const r = runner(kind, async (job) => void done.push(job.id), { concurrency: 40 })
    await r.start()
    await Bun.sleep(50) // the runner's first look at the queue is behind it
    const ids = Array.from({ length: 40 }, newId)
    await Promise.all(ids.map((id) => enqueueJob(counting, { id, kind, ownerId, payload: {} })))
    await waitFor(() => done.length === ids.length, 10_000) // the poll is a minute away: the doorbell did it
    expect(rings).toBeGreaterThanOrEqual(1)
    expect(rings).toBeLessThan(ids.length / 4)
    await r.stop()

    // Calls while a ring is in flight: exactly one more ring, which starts after the first one ends.
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const order: string[] = []
    const gated: Store = {
      ...store,
      notify: async () => {
        order.push(`start ${order.length}`)
        await gate
        order.push('end')
      },
    }
    for (let i = 0; i < 10; i++) ringJobsSoon(gated, kind)
    await Bun.sleep(10)
    expect(order).toEqual(['start 0'])
    release()
    await waitFor(() => order.length === 4, 2000)
    expect(order).toEqual(['start 0', 'end', 'start 2', 'end'])
  })

  test('concurrency is respected and jobs start oldest first', async () => {
    const kind = uniqueKind()
    const ids = Array.from({ length: 6 }, newId)
    for (const id of ids) await enqueueJob(store, { id, kind, ownerId, payload: {} })
    const started: string[] = []
    let running = 0
    let peak = 0
    const r = runner(
      kind,
      async (job) => {
        started.push(job.id)
        peak = Math.max(peak, ++running)
        await Bun.sleep(40)
        running--
      },
      { concurrency: 2 },
    )
    await r.start()
    await waitFor(async () => {
      const rows = await store.query(`select 1 from jobs where kind = $1 and status = 'succeeded'`, [kind])
      return rows.length === ids.length
    })
    expect(peak).toBe(2)
    expect(started).toEqual(ids)
    await r.stop()
  })

  test('two runners on one queue never run the same job twice (SKIP LOCKED)', async () => {
    const kind = uniqueKind()
    const ids = Array.from({ length: 30 }, newId)
    const runs = new Map<string, string[]>()
    const handler: JobHandler = async (job, ctx) => {
      runs.set(job.id, [...(runs.get(job.id) ?? []), ctx.instanceId])
      await Bun.sleep(5)
    }
    const a = runner(kind, handler, { concurrency: 3, pollMs: 100 })
    const b = runner(kind, handler, { concurrency: 3, pollMs: 100 })
    await Promise.all([a.start(), b.start()])
    await Promise.all(ids.map((id) => enqueueJob(store, { id, kind, ownerId, payload: {} })))
    await waitFor(async () => {
      const rows = await store.query(`select 1 from jobs where kind = $1 and status = 'succeeded'`, [kind])
      return rows.length === ids.length
    }, 10_000)
    for (const id of ids) expect(runs.get(id)).toHaveLength(1)
    expect(new Set([...runs.values()].flat()).size).toBe(2) // both instances did work
    await Promise.all([a.stop(), b.stop()])
  })

  test('a job whose instance died is re-claimed after its lease expires, from its checkpoint', async () => {
    const kind = uniqueKind()
    const id = newId()
    await enqueueJob(store, { id, kind, ownerId, payload: {} })
    // A "dead" instance claims it, saves a checkpoint, and never heartbeats again.
    const [claimed] = await claimJobs(store, kind, 1, 'dead-instance', 300)
    expect(claimed!.id).toBe(id)
    await store.query(`update jobs set checkpoint = $2::jsonb where id = $1`, [
      id,
      JSON.stringify({ step: 2 }),
    ])
    const seen: ClaimedJob[] = []
    const r = runner(
      kind,
      async (job) => {
        seen.push(job)
      },
      { pollMs: 100 },
    )
    await r.start()
    await waitFor(async () => (await getJob(store, id))?.status === 'succeeded', 3000)
    expect(seen).toHaveLength(1)
    expect(seen[0]!.checkpoint).toEqual({ step: 2 })
    expect(seen[0]!.attempts).toBe(2)
    await r.stop()
  })

  test('a live lease is not stolen: the heartbeat keeps it', async () => {
    const kind = uniqueKind()
    const id = newId()
    let finish!: () => void
    const gate = new Promise<void>((r) => {
      finish = r
    })
    const claims: string[] = []
    const handler: JobHandler = async (_job, ctx) => {
      claims.push(ctx.instanceId)
      await gate
    }
    const a = runner(kind, handler, { leaseMs: 300, pollMs: 50 })
    await a.start()
    await enqueueJob(store, { id, kind, ownerId, payload: {} })
    await waitFor(() => claims.length === 1)
    const b = runner(kind, handler, { leaseMs: 300, pollMs: 50 })
    await b.start()
    await Bun.sleep(1000) // three lease periods
    expect(claims).toHaveLength(1)
    finish()
    await waitFor(async () => (await getJob(store, id))?.status === 'succeeded')
    await Promise.all([a.stop(), b.stop()])
  })

  test('cancel reaches the running handler within a second; a queued job is cancelled at once', async () => {
    const kind = uniqueKind()
    let aborted: string | undefined
    let abortedAt = 0
    const r = runner(
      kind,
      async (_job, ctx) => {
        try {
          await untilAborted(ctx.signal)
        } finally {
          aborted = abortReasonOf(ctx.signal)
          abortedAt = Date.now()
        }
      },
      { concurrency: 1, leaseMs: 30_000 }, // the heartbeat is 10 s away: the doorbell must do it
    )
    await r.start()
    const running = newId()
    const queued = newId()
    await enqueueJob(store, { id: running, kind, ownerId, payload: {} })
    await waitFor(() => r.running.includes(running))
    await enqueueJob(store, { id: queued, kind, ownerId, payload: {} })
    expect(await requestJobCancel(store, queued)).toBe('cancelled')
    expect((await getJob(store, queued))?.status).toBe('cancelled')
    const t0 = Date.now()
    expect(await requestJobCancel(store, running)).toBe('requested')
    await waitFor(async () => (await getJob(store, running))?.status === 'cancelled', 2000)
    expect(aborted).toBe('cancelled')
    expect(abortedAt - t0).toBeLessThan(1000)
    expect(await requestJobCancel(store, running)).toBe('finished')
    expect(await requestJobCancel(store, 'job-that-never-was')).toBe('finished')
    await Bun.sleep(100)
    expect(r.running).toEqual([]) // the cancelled queued job never ran
    await r.stop()
  })

  test('stop() releases running jobs to the queue with their checkpoint; another runner resumes them', async () => {
    const kind = uniqueKind()
    const id = newId()
    const a = runner(kind, async (_job, ctx: JobContext) => {
      await ctx.checkpoint({ done: ['plan'] })
      await untilAborted(ctx.signal)
    })
    await a.start()
    await enqueueJob(store, { id, kind, ownerId, payload: {} })
    await waitFor(async () => (await getJob(store, id))?.checkpoint !== null)
    await a.stop()
    const after = await getJob(store, id)
    expect(after?.status).toBe('queued')
    expect(after?.leaseOwner).toBeNull()
    expect(after?.checkpoint).toEqual({ done: ['plan'] })
    let resumedFrom: unknown
    const b = runner(kind, async (job) => {
      resumedFrom = job.checkpoint
    })
    await b.start()
    await waitFor(async () => (await getJob(store, id))?.status === 'succeeded')
    expect(resumedFrom).toEqual({ done: ['plan'] })
    await b.stop()
  })

  test('a throwing handler fails the job with its message; outcomes are recorded as returned', async () => {
    const kind = uniqueKind()
    const r = runner(kind, async (job) => {
      if (job.payload.mode === 'throw') throw new Error('the model said no')
      if (job.payload.mode === 'fail') return { status: 'failed', error: 'explicit' }
      return { status: 'cancelled' }
    })
    await r.start()
    const [t, f, c] = [newId(), newId(), newId()]
    await enqueueJob(store, { id: t, kind, ownerId, payload: { mode: 'throw' } })
    await enqueueJob(store, { id: f, kind, ownerId, payload: { mode: 'fail' } })
    await enqueueJob(store, { id: c, kind, ownerId, payload: { mode: 'cancel' } })
    await waitFor(async () => (await getJob(store, c))?.status === 'cancelled')
    await waitFor(async () => (await getJob(store, t))?.status === 'failed')
    expect((await getJob(store, t))?.error).toBe('the model said no')
    await waitFor(async () => (await getJob(store, f))?.status === 'failed')
    expect((await getJob(store, f))?.error).toBe('explicit')
    await r.stop()
  })

  test('an instance whose lease was taken over is told so and cannot checkpoint', async () => {
    const kind = uniqueKind()
    const id = newId()
    let reason: string | undefined
    let checkpointError: unknown
    let handlerDone = false
    const a = runner(
      kind,
      async (_job, ctx) => {
        await untilAborted(ctx.signal).catch(() => {})
        reason = abortReasonOf(ctx.signal)
        checkpointError = await ctx.checkpoint({ late: true }).catch((e) => e)
        handlerDone = true
      },
      { leaseMs: 600 },
    )
    await a.start()
    await enqueueJob(store, { id, kind, ownerId, payload: {} })
    await waitFor(() => a.running.includes(id))
    // Someone else holds it now (as if our lease had expired while we were partitioned).
    await store.query(`update jobs set lease_owner = 'other-instance' where id = $1`, [id])
    // The checkpoint attempt is a database round trip after the abort: wait for the handler's end.
    await waitFor(() => handlerDone, 2000)
    expect(reason).toBe('lease_lost')
    expect(checkpointError).toBeInstanceOf(LeaseLostError)
    const job = await getJob(store, id)
    expect(job?.leaseOwner).toBe('other-instance')
    expect(job?.checkpoint).toBeNull()
    await a.stop()
  })
})
