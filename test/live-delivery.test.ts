/**
 * Live delivery across the real pieces: several app instances on one Postgres, a killed LISTEN connection,
 * and a bounded soak of many clients reconnecting while producers append.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import postgres from 'postgres'
import { connectWs } from '../plugins/websocket/testing.ts'
import {
  ADMIN_KEY,
  freshDatabase,
  PG_BASE_URL,
  startTestServer,
  type TestServer,
  waitFor,
} from './helpers.ts'

const auth = { authorization: `Bearer ${ADMIN_KEY}` }
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)
const wsUrl = (server: TestServer, stream: string, since = 0) =>
  `${server.url.replace('http', 'ws')}/ws/${stream}?since=${since}`

describe.skipIf(!PG_BASE_URL)('two instances on one Postgres', () => {
  let a: TestServer
  let b: TestServer
  let owner: string
  let n = 0
  const newStream = async () => {
    const id = `task-multi${++n}`
    await a.running.gantry.events.createStream(id, owner, 'task')
    return id
  }

  beforeAll(async () => {
    const db = await freshDatabase()
    a = await startTestServer({}, { database: db, keepDatabase: true })
    b = await startTestServer({}, { database: db })
    owner = (await a.api('/api/me')).body.user_id
  }, 60_000)
  afterAll(async () => {
    await a?.stop()
    await b?.stop()
  })

  test('a subscriber on one instance sees events appended on the other, in order', async () => {
    const stream = await newStream()
    const onA = await connectWs(wsUrl(a, stream), auth)
    await b.running.gantry.events.appendMany(stream, [{ type: 'ONE' }, { type: 'TWO' }])
    await b.running.gantry.events.append(stream, 'THREE')
    await onA.next((f) => f.seq === 3)
    expect(onA.frames.map((f) => f.type)).toEqual(['ONE', 'TWO', 'THREE'])
    onA.ws.close()
  })

  test('concurrent appenders on both instances: one gap-free sequence, delivered whole to both sides', async () => {
    const stream = await newStream()
    const onA = await connectWs(wsUrl(a, stream), auth)
    const onB = await connectWs(wsUrl(b, stream), auth)
    const acks = await Promise.all(
      range(1, 400).map((i) => (i % 2 ? a : b).running.gantry.events.append(stream, 'E', { i })),
    )
    expect(acks.map((e) => e.seq).sort((x, y) => x - y)).toEqual(range(1, 400))
    await onA.next((f) => f.seq === 400, 10_000)
    await onB.next((f) => f.seq === 400, 10_000)
    expect(onA.frames.map((f) => f.seq)).toEqual(range(1, 400))
    expect(onB.frames.map((f) => f.seq)).toEqual(range(1, 400))
    onA.ws.close()
    onB.ws.close()
  })

  test('the LISTEN connection killed mid-run: reconnects, catches up from the table, misses nothing', async () => {
    const stream = await newStream()
    const onA = await connectWs(wsUrl(a, stream), auth)
    const producing = (async () => {
      for (let i = 0; i < 60; i++) {
        await b.running.gantry.events.append(stream, 'E', { i })
        await Bun.sleep(5)
      }
    })()
    await onA.next((f) => f.seq === 10)
    const admin = postgres(a.databaseUrl!, { max: 1, onnotice: () => {} })
    try {
      const killed = await admin`
        select pg_terminate_backend(pid) as ok from pg_stat_activity
         where datname = current_database() and pid <> pg_backend_pid() and query ilike 'listen%'`
      expect(killed.length).toBeGreaterThan(0)
      await producing
      // No doorbell comes after the last append: only the catch-up on reconnect can deliver the tail.
      await onA.next((f) => f.seq === 60, 15_000)
      expect(onA.frames.map((f) => f.seq)).toEqual(range(1, 60))
      const listening = await admin`
        select count(*)::int as n from pg_stat_activity where datname = current_database() and query ilike 'listen%'`
      expect(listening[0]!.n).toBeGreaterThan(0)
    } finally {
      await admin.end()
      onA.ws.close()
    }
  }, 30_000)
})

describe('soak: clients dropping and resuming while producers append', () => {
  const CLIENTS = 100
  const PRODUCERS = 5
  const EVENTS = 20_000
  let servers: TestServer[] = []

  afterAll(async () => {
    for (const s of servers) await s.stop()
  })

  test(`${CLIENTS} clients, ${PRODUCERS} producers, ${EVENTS} events: every client gets every seq once, in order`, async () => {
    // On Postgres, clients and producers spread over two instances; on PGlite there is one.
    const db = await freshDatabase()
    servers = PG_BASE_URL
      ? [
          await startTestServer({}, { database: db, keepDatabase: true }),
          await startTestServer({}, { database: db }),
        ]
      : [await startTestServer({}, { database: db })]
    const owner = (await servers[0]!.api('/api/me')).body.user_id
    const stream = 'task-soak'
    await servers[0]!.running.gantry.events.createStream(stream, owner, 'task')

    const problems: string[] = []
    const lasts = new Array<number>(CLIENTS + 1).fill(0)
    let producing = true
    const clients = range(1, CLIENTS).map(async (c) => {
      const server = servers[c % servers.length]!
      let last = 0
      let reconnects = 0
      while (last < EVENTS) {
        const ws = new WebSocket(wsUrl(server, stream, last), { headers: auth } as any)
        await new Promise<void>((resolve) => {
          // Drop at a random moment while events flow, then resume from the last seq seen.
          const dropAfter =
            producing && Math.random() < 0.7 ? 20 + Math.random() * 400 : Number.POSITIVE_INFINITY
          let timer: ReturnType<typeof setTimeout> | undefined
          ws.onopen = () => {
            if (dropAfter !== Number.POSITIVE_INFINITY) timer = setTimeout(() => ws.close(), dropAfter)
          }
          ws.onmessage = (m) => {
            const seq = JSON.parse(m.data as string).seq as number
            if (seq !== last + 1) problems.push(`client ${c}: got ${seq} after ${last}`)
            last = seq
            lasts[c] = seq
            if (last === EVENTS) ws.close()
          }
          ws.onclose = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        reconnects++
      }
      return reconnects
    })

    const started = Date.now()
    const perProducer = EVENTS / PRODUCERS
    await Promise.all(
      range(1, PRODUCERS).map(async (p) => {
        const events = servers[p % servers.length]!.running.gantry.events
        for (let i = 0; i < perProducer; i += 20)
          await events.appendMany(
            stream,
            range(1, 20).map((j) => ({ type: 'E', data: { p, i: i + j } })),
          )
      }),
    )
    producing = false
    const produced = Date.now() - started
    const reconnects = await Promise.race([
      Promise.all(clients),
      Bun.sleep(45_000).then(() => {
        throw new Error(
          `soak clients did not finish in 45 s: slowest at ${Math.min(...lasts.slice(1))}, ${lasts.filter((l) => l === EVENTS).length} done`,
        )
      }),
    ])
    expect(problems.slice(0, 5)).toEqual([])
    expect(reconnects.reduce((x, y) => x + y, 0)).toBeGreaterThan(CLIENTS)
    expect(await servers[0]!.running.gantry.events.head(stream)).toBe(EVENTS)
    await waitFor(
      () => servers.every((s) => s.running.gantry.connections.size === 0),
      5000,
      'sockets cleaned up',
    )
    console.log(
      `soak: ${EVENTS} events to ${CLIENTS} clients (${reconnects.reduce((x, y) => x + y, 0)} connections) in ${Date.now() - started} ms (appends done after ${produced} ms)`,
    )
  }, 90_000)
})
