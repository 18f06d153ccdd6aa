/**
 * Fencing stale workers, in one process: a job attempt whose lease was taken over (another runner claimed the
 * job, or the epoch moved on) gets its next write refused — events, fenced row writes, checkpoints — stops at
 * once, and the event log holds nothing of it after the takeover; other streams in the same flush are unharmed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startTestServer, type TestServer, tempDir, waitFor } from '../../test/helpers.ts'
import type { Store } from './db.ts'
import type { EventLog } from './events.ts'
import {
  abortReasonOf,
  enqueueJob,
  type Fence,
  getJob,
  type JobHandler,
  JobRunner,
  LeaseLostError,
} from './jobs.ts'

let server: TestServer
let store: Store
let events: EventLog
let ownerId: string
const runners: JobRunner[] = []
let n = 0
const unique = (what: string) => `${what}-fence${++n}-${Math.random().toString(36).slice(2, 6)}`

beforeAll(async () => {
  server = await startTestServer({ PLUGINS_DIR: tempDir('gantry-noplugins-') })
  store = server.running.gantry.store
  events = server.running.gantry.events
  const [admin] = await store.query<{ id: string }>('select id from users limit 1')
  ownerId = admin!.id
}, 30_000)
afterAll(async () => {
  for (const r of runners) await r.stop()
  await server.stop()
}, 30_000)

function runner(
  kind: string,
  handler: JobHandler,
  opts: Partial<ConstructorParameters<typeof JobRunner>[2]>,
) {
  const r = new JobRunner(store, server.running.gantry.log, {
    kind,
    concurrency: 1,
    handler,
    leaseMs: 1000,
    ...opts,
  })
  runners.push(r)
  return r
}

const typesOf = async (stream: string) => (await events.readSince(stream, 0)).map((e) => e.type)

describe('fencing', () => {
  test('a fenced append in a flush is refused as a whole; the other streams of that flush commit, gap-free', async () => {
    const kind = unique('k')
    const id = unique('job')
    const stale = `task-${unique('stale')}`
    const other = `task-${unique('other')}`
    await events.createStream(stale, ownerId, 'task')
    await events.createStream(other, ownerId, 'task')
    await enqueueJob(store, { id, kind, ownerId, payload: {} })
    // This attempt held epoch 1; another claim made it 2.
    await store.query(
      `update jobs set status = 'running', lease_owner = 'b', lease_epoch = 2, lease_expires_at = now() + interval '1 minute' where id = $1`,
      [id],
    )
    let fencedCalls = 0
    const old: Fence = { jobId: id, epoch: 1, owner: 'a', onFenced: () => fencedCalls++ }
    const current: Fence = { jobId: id, epoch: 2, owner: 'b' }
    // Same turn of the event loop: one flush, one statement.
    const results = await Promise.allSettled([
      events.append(other, 'BEFORE'),
      events.appendMany(stale, [{ type: 'OLD_1' }, { type: 'OLD_2' }], { fence: old }),
      events.append(other, 'MIDDLE', null, { fence: current }),
      events.append(stale, 'NEW', null, { fence: current }),
      events.append(stale, 'OLD_3', null, { fence: { jobId: id, epoch: 1, owner: 'b' } }), // old epoch
      events.append(other, 'AFTER'),
    ])
    expect(results.map((r) => r.status)).toEqual([
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
    ])
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(LeaseLostError)
    expect(fencedCalls).toBe(1)
    const otherEvents = await events.readSince(other, 0)
    expect(otherEvents.map((e) => [e.seq, e.type])).toEqual([
      [1, 'BEFORE'],
      [2, 'MIDDLE'],
      [3, 'AFTER'],
    ])
    // No seq was spent on the refused events: the stream stays gap-free.
    expect((await events.readSince(stale, 0)).map((e) => [e.seq, e.type])).toEqual([[1, 'NEW']])
    expect(await events.head(stale)).toBe(1)
    expect((results[3] as PromiseFulfilledResult<{ seq: number }>).value.seq).toBe(1)
  })

  test('a lease taken over under a live worker: its next event, row write and checkpoint are refused, and it stops', async () => {
    const kind = unique('k')
    const id = unique('job')
    const stream = `task-${unique('s')}`
    await events.createStream(stream, ownerId, 'task')
    let release!: () => void
    const paused = new Promise<void>((r) => {
      release = r
    })
    const first: {
      reason?: string
      error?: unknown
      rowWrite?: unknown
      checkpoint?: unknown
      after: number
    } = { after: 0 }
    let secondEpoch = 0
    const handler: JobHandler = async (job, ctx) => {
      if (job.attempts === 1) {
        await events.append(stream, 'STEP', { attempt: 1, n: 1 }, { fence: ctx.fence })
        await paused // "SIGSTOP": no heartbeat either (see heartbeatMs below)
        try {
          for (let i = 2; i <= 5; i++) {
            await events.append(stream, 'STEP', { attempt: 1, n: i }, { fence: ctx.fence })
            first.after++
          }
        } catch (err) {
          first.error = err
        }
        first.reason = abortReasonOf(ctx.signal)
        first.rowWrite = await ctx
          .fenced((tx) => tx.execute(`update event_streams set head = head where id = '${stream}'` as any))
          .then(
            () => 'committed',
            (e) => e,
          )
        first.checkpoint = await ctx.checkpoint({ late: true }).then(
          () => 'saved',
          (e) => e,
        )
        throw first.error
      }
      secondEpoch = job.epoch
      for (let i = 1; i <= 3; i++)
        await events.append(stream, 'STEP', { attempt: job.attempts, n: i }, { fence: ctx.fence })
      await ctx.checkpoint({ done: true })
    }
    // A's heartbeat never runs (as if paused); its lease runs out and B, polling, claims the job.
    const a = runner(kind, handler, { leaseMs: 300, heartbeatMs: 60_000, pollMs: 60_000 })
    await a.start()
    await enqueueJob(store, { id, kind, ownerId, payload: {} })
    await waitFor(async () => (await typesOf(stream)).length === 1, 5000, 'the first attempt to start')
    const b = runner(kind, handler, { leaseMs: 300, pollMs: 100 })
    await b.start()
    await waitFor(
      async () => (await getJob(store, id))?.status === 'succeeded',
      10_000,
      'B to finish the job',
    )
    expect(secondEpoch).toBe(2)
    release() // "SIGCONT"
    await waitFor(() => a.running.length === 0, 5000, 'A to stop')
    expect(first.after).toBe(0) // not one more event got in
    expect(first.error).toBeInstanceOf(LeaseLostError)
    expect(first.reason).toBe('lease_lost')
    expect(first.rowWrite).toBeInstanceOf(LeaseLostError)
    expect(first.checkpoint).toBeInstanceOf(LeaseLostError)
    const log = await events.readSince(stream, 0)
    expect(log.map((e) => e.data)).toEqual([
      { attempt: 1, n: 1 },
      { attempt: 2, n: 1 },
      { attempt: 2, n: 2 },
      { attempt: 2, n: 3 },
    ])
    const job = await getJob(store, id)
    expect(job).toMatchObject({ status: 'succeeded', checkpoint: { done: true }, attempts: 2 })
    await a.stop()
    await b.stop()
  }, 30_000)

  test('the same instance claiming its own job again fences its earlier attempt', async () => {
    const kind = unique('k')
    const id = unique('job')
    const stream = `task-${unique('s')}`
    await events.createStream(stream, ownerId, 'task')
    const fences: Fence[] = []
    let release!: () => void
    const paused = new Promise<void>((r) => {
      release = r
    })
    const outcome: unknown[] = []
    const r = runner(
      kind,
      async (job, ctx) => {
        fences.push(ctx.fence)
        if (job.attempts === 1) {
          await paused
          outcome.push(await events.append(stream, 'LATE', null, { fence: ctx.fence }).catch((e) => e))
          return
        }
        await events.append(stream, 'CURRENT', null, { fence: ctx.fence })
        await paused
      },
      { leaseMs: 300, heartbeatMs: 60_000, pollMs: 100, concurrency: 2 },
    )
    await r.start()
    await enqueueJob(store, { id, kind, ownerId, payload: {} })
    await waitFor(async () => (await typesOf(stream)).includes('CURRENT'), 10_000, 'the second attempt')
    expect(fences.map((f) => [f.owner === r.instanceId, f.epoch])).toEqual([
      [true, 1],
      [true, 2],
    ])
    release()
    await waitFor(() => outcome.length === 1, 5000, 'the first attempt to write')
    expect(outcome[0]).toBeInstanceOf(LeaseLostError)
    expect(await typesOf(stream)).toEqual(['CURRENT'])
    await r.stop()
  }, 30_000)
})
