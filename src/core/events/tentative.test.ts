/**
 * Events before their commit: what an opted-in, caught-up subscriber sees (tentative events, then acks or
 * retractions), and that what it keeps always equals the durable log — the property the clients rely on.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startTestServer, type TestServer, waitFor } from '../../../test/helpers.ts'
import { LeaseLostError } from '../jobs.ts'
import { SHOWN_COMMIT_GATHER_MS } from './log.ts'
import type { EventLog, StoredEvent, TentativeEvent } from './types.ts'

let server: TestServer
let events: EventLog
let owner: string
let n = 0
const newStream = async () => {
  const id = `task-tentative${++n}`
  await events.createStream(id, owner, 'task')
  return id
}
/** A fence for a job attempt that holds nothing: the flush refuses its events. */
const lostFence = { jobId: 'job-nobody-holds', epoch: 1, owner: 'gone:1' }

beforeAll(async () => {
  server = await startTestServer()
  events = server.running.gantry.events
  owner = (await server.api('/api/me')).body.user_id
}, 30_000)
afterAll(() => server.stop())

/**
 * A client as the protocol asks it to be: committed events by seq; tentative ones kept apart until acked (then
 * committed at that seq) or retracted (then dropped). `kept()` is what it would go on showing.
 */
function client(stream: string, since = 0, take: (e: TentativeEvent) => boolean = () => true) {
  const c = {
    log: [] as string[],
    committed: [] as { seq: number; type: string; data: unknown }[],
    tentative: new Map<number, TentativeEvent>(),
    problems: [] as string[],
    last: since,
    sub: undefined as unknown as { close(): void },
    kept: () => c.committed.map((e) => e.data),
  }
  const commit = (seq: number, type: string, data: unknown) => {
    if (seq !== c.last + 1) c.problems.push(`seq ${seq} after ${c.last}`)
    c.last = seq
    c.committed.push({ seq, type, data })
  }
  c.sub = events.subscribe(
    stream,
    since,
    (e: StoredEvent) => {
      c.log.push(`event ${e.seq}`)
      commit(e.seq, e.type, e.data)
    },
    {
      tentative: {
        onEvent(e) {
          if (!take(e)) return false
          c.log.push(`tentative ${e.type}`)
          c.tentative.set(e.tentative, e)
          return true
        },
        onAck(seq, ids) {
          c.log.push(`ack ${seq}`)
          const parts = ids.map((id) => c.tentative.get(id))
          if (parts.some((p) => !p)) c.problems.push(`ack ${seq} of unknown ${ids}`)
          for (const id of ids) c.tentative.delete(id)
          // Merged parts (the caller's `previewed`) commit as one event: here they are single, or strings.
          const data =
            parts.length === 1 ? parts[0]!.data : parts.map((p) => (p!.data as { s: string }).s).join('')
          commit(seq, parts[0]!.type, data)
        },
        onRetract(ids) {
          c.log.push(`retract ${ids.length}`)
          for (const id of ids) if (!c.tentative.delete(id)) c.problems.push(`retract of unknown ${id}`)
        },
      },
    },
  )
  return c
}

/** Waits until `c` takes tentative events (its replay is over), probing with previews it then retracts. */
async function live(stream: string, c: ReturnType<typeof client>) {
  await waitFor(
    () => {
      const before = c.log.length
      const id = events.preview(stream, 'PROBE', null)
      if (id !== undefined) events.retract(stream, [id])
      return c.log.length > before
    },
    5000,
    'the subscriber to go live',
  )
  c.log.length = 0
}

describe('tentative delivery', () => {
  test('an opted-in subscriber has the event before the commit, then an ack in its place; a stock one the event', async () => {
    const stream = await newStream()
    await events.append(stream, 'FIRST')
    const fast = client(stream)
    const stock: number[] = []
    const sub = events.subscribe(stream, 0, (e) => stock.push(e.seq))
    await waitFor(() => fast.last === 1 && stock.length === 1, 5000, 'both caught up')
    const appended = events.append(stream, 'LOG', { i: 1 })
    // Synchronously, at the append call: no database round trip has happened yet.
    expect(fast.log).toEqual(['event 1', 'tentative LOG'])
    expect(stock).toEqual([1])
    const stored = await appended
    await waitFor(() => fast.last === 2 && stock.length === 2, 5000, 'the commit')
    expect(fast.log).toEqual(['event 1', 'tentative LOG', `ack ${stored.seq}`])
    expect(fast.kept()).toEqual([null, { i: 1 }])
    expect(stock).toEqual([1, 2])
    fast.sub.close()
    sub.close()
  })

  test('a fenced append is retracted before its appender hears of it, and never acked', async () => {
    const stream = await newStream()
    const fast = client(stream)
    await live(stream, fast)
    const probe = events.preview(stream, 'PROBE', null)!
    const [lost, ok] = await Promise.allSettled([
      events.append(stream, 'STALE', { from: 'a taken-over attempt' }, { fence: lostFence }),
      events.append(stream, 'FRESH', { from: 'anyone' }),
    ])
    expect(lost.status === 'rejected' && lost.reason).toBeInstanceOf(LeaseLostError)
    expect(ok.status).toBe('fulfilled')
    await waitFor(() => fast.last === 1, 5000, 'the commit')
    expect(fast.log).toEqual(['tentative PROBE', 'tentative STALE', 'tentative FRESH', 'retract 1', 'ack 1'])
    // The probe was never appended: it is still tentative until its caller retracts it.
    expect([...fast.tentative.values()].map((e) => e.type)).toEqual(['PROBE'])
    events.retract(stream, [probe])
    expect(fast.tentative.size).toBe(0)
    expect(fast.kept()).toEqual([{ from: 'anyone' }])
    expect(fast.problems).toEqual([])
    fast.sub.close()
  })

  test('merged previews ack as one event; a subscriber that saw only part gets a retraction and the event', async () => {
    const stream = await newStream()
    const early = client(stream)
    await live(stream, early)
    const a = events.preview(stream, 'content', { s: 'Hel' })!
    const late = client(stream)
    await live(stream, late)
    const b = events.preview(stream, 'content', { s: 'lo' })!
    expect(early.tentative.size).toBe(2)
    expect(late.tentative.size).toBe(1) // only "lo"
    await events.appendMany(stream, [{ type: 'content', data: { s: 'Hello' } }], { previewed: [[a, b]] })
    await waitFor(() => early.last === 1 && late.last === 1, 5000, 'the commit')
    expect(early.log.slice(-1)).toEqual(['ack 1'])
    expect(early.kept()).toEqual(['Hello'])
    expect(late.log.slice(-2)).toEqual(['retract 1', 'event 1'])
    expect(late.kept()).toEqual([{ s: 'Hello' }])
    expect([early.tentative.size, late.tentative.size]).toEqual([0, 0])
    early.sub.close()
    late.sub.close()
  })

  test('appends whose every event is already shown share one flush; any other append ends the wait at once', async () => {
    const log = events as unknown as {
      store: { query: (...args: unknown[]) => Promise<unknown> }
      shownGatherMs: number
    }
    let flushes = 0
    const query = log.store.query
    log.store.query = (...args) => {
      if (String(args[0]).includes('jsonb_to_recordset')) flushes++
      return query(...args)
    }
    const shown = async (stream: string, s: string) => {
      const id = events.preview(stream, 'content', { s })!
      expect(id).toBeDefined()
      return events.appendMany(stream, [{ type: 'content', data: { s } }], { previewed: [[id]] })
    }
    const [a, b, c] = [await newStream(), await newStream(), await newStream()]
    const clients = [client(a), client(b)]
    await live(a, clients[0]!)
    await live(b, clients[1]!)
    try {
      // Two streams flushing 5 ms apart, each shown already: one transaction, not two.
      flushes = 0
      const first = shown(a, 'one')
      await new Promise((resolve) => setTimeout(resolve, 5))
      await Promise.all([first, shown(b, 'two')])
      expect(flushes).toBe(1)
      // A wait that would outlast the test is ended by an append that nobody has seen (c has no subscriber).
      log.shownGatherMs = 600_000
      flushes = 0
      const waiting = [shown(a, 'three'), shown(b, 'four')]
      await new Promise((resolve) => setTimeout(resolve, 5))
      await Promise.all([...waiting, events.append(c, 'UNSEEN', {})])
      expect(flushes).toBe(1)
      await waitFor(() => clients.every((x) => x.last === 2), 5000, 'the acks')
      expect(clients.map((x) => x.kept())).toEqual([
        [{ s: 'one' }, { s: 'three' }],
        [{ s: 'two' }, { s: 'four' }],
      ])
      expect(clients.flatMap((x) => x.problems)).toEqual([])
    } finally {
      log.store.query = query
      log.shownGatherMs = SHOWN_COMMIT_GATHER_MS
      for (const x of clients) x.sub.close()
    }
  })

  test('a replaying subscriber is not shown tentative events; a stock-only stream skips the tentative path', async () => {
    const stream = await newStream()
    await events.appendMany(
      stream,
      Array.from({ length: 50 }, (_, i) => ({ type: 'E', data: i })),
    )
    const stock = events.subscribe(stream, 0, () => {})
    expect(events.preview(stream, 'E', 'nobody asked')).toBeUndefined()
    const replaying = client(stream, 0)
    expect(events.preview(stream, 'E', 'still replaying')).toBeUndefined()
    await waitFor(() => replaying.last === 50, 5000, 'replay')
    expect(replaying.tentative.size).toBe(0)
    expect(replaying.log.every((l) => l.startsWith('event'))).toBe(true)
    stock.close()
    replaying.sub.close()
  })

  test('soak: appends, fenced appends and subscribers joining midway; each keeps exactly the durable log', async () => {
    const stream = await newStream()
    const clients = [client(stream), client(stream, 0, (e) => Number(e.data) % 3 !== 0)]
    const producing = (async () => {
      for (let i = 0; i < 60; i++) {
        const batch = Array.from({ length: 5 }, (_, j) => i * 5 + j)
        await Promise.allSettled(
          batch.map((k) =>
            k % 7 === 0
              ? events.append(stream, 'E', -k, { fence: lostFence })
              : events.append(stream, 'E', k),
          ),
        )
        if (i % 10 === 5) clients.push(client(stream, Math.max(0, clients[0]!.last - 3)))
        await new Promise((resolve) => setImmediate(resolve))
      }
    })()
    await producing
    const head = await events.head(stream)
    await waitFor(() => clients.every((c) => c.last === head), 10_000, 'every client at the head')
    const durable = (await events.readSince(stream, 0)).map((e) => e.data)
    expect(durable.length).toBe(head)
    expect(durable.some((d) => Number(d) < 0)).toBe(false)
    for (const c of clients) {
      expect(c.problems).toEqual([])
      expect(c.tentative.size).toBe(0)
      expect(c.kept()).toEqual(durable.slice(durable.length - c.committed.length))
    }
    // The first client saw (nearly) everything tentatively: acks, not events, and the fenced ones retracted.
    expect(clients[0]!.log.filter((l) => l.startsWith('ack')).length).toBeGreaterThan(head / 2)
    expect(clients[0]!.log.filter((l) => l.startsWith('retract')).length).toBeGreaterThan(0)
    for (const c of clients) c.sub.close()
  })
})
