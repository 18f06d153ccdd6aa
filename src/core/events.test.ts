import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'
import type { EventLog, StoredEvent } from './events.ts'

let server: TestServer
let events: EventLog
let owner: string
let n = 0
const newStream = async (kind: 'task' | 'session' = 'task') => {
  const id = `${kind === 'task' ? 'task' : 'sess'}-evtest${++n}`
  await events.createStream(id, owner, kind)
  return id
}
const seqs = (list: StoredEvent[]) => list.map((e) => e.seq)
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

beforeAll(async () => {
  server = await startTestServer()
  events = server.running.gantry.events
  owner = (await server.api('/api/me')).body.user_id
}, 30_000)
afterAll(() => server.stop())

describe('event log', () => {
  test('appends get gap-free seqs from 1, acknowledged after commit, readable at once', async () => {
    const stream = await newStream()
    const first = await events.append(stream, 'TASK_STARTED', { goal: 'x' })
    expect(first).toMatchObject({ stream, seq: 1, type: 'TASK_STARTED', data: { goal: 'x' } })
    expect(new Date(first.timestamp).toISOString()).toBe(first.timestamp)
    const many = await events.appendMany(stream, [{ type: 'A' }, { type: 'B', data: [1, 2] }])
    expect(seqs(many)).toEqual([2, 3])
    const read = await events.readSince(stream, 0)
    expect(read.map((e) => [e.seq, e.type, e.data])).toEqual([
      [1, 'TASK_STARTED', { goal: 'x' }],
      [2, 'A', null],
      [3, 'B', [1, 2]],
    ])
    expect(read[0]!.timestamp).toBe(first.timestamp)
    expect(await events.head(stream)).toBe(3)
    expect(seqs(await events.readSince(stream, 1, 1))).toEqual([2])
  })

  test('concurrent appenders on several streams: every stream gap-free, each append its own seq', async () => {
    const streams = [await newStream(), await newStream(), await newStream()]
    const acks = await Promise.all(
      Array.from({ length: 600 }, (_, i) => events.append(streams[i % 3]!, 'LOG', { i })),
    )
    for (const stream of streams) {
      const mine = acks.filter((a) => a.stream === stream)
      expect(seqs(mine).sort((a, b) => a - b)).toEqual(range(1, 200))
      const stored = await events.readSince(stream, 0)
      expect(seqs(stored)).toEqual(range(1, 200))
      // What the appender was told is what the table holds.
      for (const ack of mine) expect(stored[ack.seq - 1]!.data).toEqual(ack.data)
    }
  })

  test('appends made while flushes are in flight commit in call order on every stream', async () => {
    // Spread over many event-loop turns, so a batch is always in flight while the next ones gather: whatever
    // the flushing does, each stream's appends must take their seqs in the order they were made.
    const streams = [await newStream(), await newStream(), await newStream()]
    const acks: Promise<StoredEvent>[] = []
    for (let i = 0; i < 450; i++) {
      acks.push(events.append(streams[i % 3]!, 'LOG', { i }))
      if (i % 7 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
    const done = await Promise.all(acks)
    for (const [k, stream] of streams.entries()) {
      const mine = done.filter((a) => a.stream === stream)
      expect(seqs(mine)).toEqual(range(1, 150)) // in the order they were called
      const stored = await events.readSince(stream, 0)
      expect(stored.map((e) => (e.data as { i: number }).i)).toEqual(range(0, 149).map((j) => j * 3 + k))
    }
  })

  test('an unknown stream is refused without failing its batch neighbours', async () => {
    const stream = await newStream()
    const [good, bad, bad2] = await Promise.allSettled([
      events.append(stream, 'OK'),
      events.append('task-does-not-exist', 'NOPE'),
      events.append(stream, 'BAD', { text: 'nul \u0000 byte' }),
    ])
    expect(good.status).toBe('fulfilled')
    expect(bad.status).toBe('rejected')
    expect((bad as PromiseRejectedResult).reason.status).toBe(404)
    expect(bad2.status).toBe('rejected')
    expect(seqs(await events.readSince(stream, 0))).toEqual([1])
    expect(await events.head(stream)).toBe(1)
  })

  test('non-serialisable data is refused before it reaches the database', async () => {
    const stream = await newStream()
    await expect(events.append(stream, 'X', { n: 1n })).rejects.toThrow(/JSON/)
  })

  test('streamInfo: owner, kind, finished; createStream is idempotent', async () => {
    const stream = await newStream('session')
    await events.createStream(stream, owner, 'session')
    expect(await events.streamInfo(stream)).toEqual({ ownerId: owner, kind: 'session', finished: false })
    await events.finishStream(stream)
    expect((await events.streamInfo(stream))?.finished).toBe(true)
    expect(await events.streamInfo('sess-unknown')).toBeUndefined()
  })

  test('replay/live seam under concurrent appends: every seq exactly once, in order', async () => {
    const stream = await newStream()
    await events.appendMany(
      stream,
      range(1, 300).map((i) => ({ type: 'E', data: i })),
    )
    const producing = (async () => {
      for (let i = 0; i < 30; i++)
        await Promise.all(range(1, 10).map((j) => events.append(stream, 'E', 300 + i * 10 + j)))
    })()
    // Subscribers join at different points while appends keep landing.
    const received: number[][] = []
    const subs = []
    for (const since of [0, 0, 150, 299, 300]) {
      const got: number[] = []
      received.push(got)
      subs.push(events.subscribe(stream, since, (e) => got.push(e.seq)))
      await Bun.sleep(5)
    }
    await producing
    const froms = [0, 0, 150, 299, 300]
    await waitFor(
      () => received.every((got) => got.length && got[got.length - 1] === 600),
      10_000,
      'all delivered',
    )
    for (const [i, got] of received.entries()) expect(got).toEqual(range(froms[i]! + 1, 600))
    for (const s of subs) s.close()
  })

  test('since beyond the head waits for live; a closed subscription stops', async () => {
    const stream = await newStream()
    await events.appendMany(stream, [{ type: 'A' }, { type: 'B' }])
    const got: number[] = []
    const sub = events.subscribe(stream, 3, (e) => got.push(e.seq))
    await events.append(stream, 'C')
    await events.append(stream, 'D')
    await waitFor(() => got.length === 1, 3000, 'seq 4')
    expect(got).toEqual([4])
    sub.close()
    await events.append(stream, 'E')
    await Bun.sleep(50)
    expect(got).toEqual([4])
  })

  test('finishStream ends subscribers after the last event; deleteStream takes the events', async () => {
    const stream = await newStream()
    const got: number[] = []
    let ended: string | undefined
    const sub = events.subscribe(stream, 0, (e) => got.push(e.seq), { onEnd: (r) => (ended = r) })
    await events.appendMany(stream, [{ type: 'A' }, { type: 'TASK_COMPLETE' }])
    await events.finishStream(stream)
    await waitFor(() => ended, 3000, 'end')
    expect(ended).toBe('finished')
    expect(got).toEqual([1, 2])
    // A late subscriber replays, then ends too.
    let lateEnd: string | undefined
    const late: number[] = []
    events.subscribe(stream, 1, (e) => late.push(e.seq), { onEnd: (r) => (lateEnd = r) })
    await waitFor(() => lateEnd, 3000, 'late end')
    expect(late).toEqual([2])
    sub.close()

    let deleted: string | undefined
    events.subscribe(stream, 2, () => {}, { onEnd: (r) => (deleted = r) })
    await Bun.sleep(20)
    await events.deleteStream(stream)
    expect(deleted).toBe('deleted')
    expect(await events.streamInfo(stream)).toBeUndefined()
    expect(await events.readSince(stream, 0)).toEqual([])
    await expect(events.append(stream, 'X')).rejects.toThrow(/not found/)
  })

  test('deleting the owner deletes their streams and events', async () => {
    const bob = await server.api('/api/keys', { method: 'POST', json: { user: 'evt-bob' } })
    const stream = 'task-evtest-bob'
    await events.createStream(stream, bob.body.user_id, 'task')
    await events.append(stream, 'A')
    await server.running.gantry.store.query('delete from users where id = $1', [bob.body.user_id])
    expect(await events.streamInfo(stream)).toBeUndefined()
    const [{ count }] = await server.running.gantry.store.query<{ count: number }>(
      'select count(*)::int as count from events where stream = $1',
      [stream],
    )
    expect(count).toBe(0)
  })
})
