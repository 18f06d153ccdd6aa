/**
 * Fan-out: one stream, 1,000 WebSocket subscribers. Gantry (append → event log → WS /ws/:id) beside a bare
 * Bun.serve using server.publish, in one run. Latency is from the publish (append) call to each receipt; the
 * clients live in this process, for both sides alike. Goal: Gantry p99 ≤ 10 ms.
 * Run: bun bench/fanout.bench.ts  (DATABASE_URL set: against Postgres; else PGlite)
 */
import { ADMIN_KEY, startTestServer } from '../test/helpers.ts'

const SUBSCRIBERS = 1000
const MESSAGES = 100
const INTERVAL_MS = 20

const now = () => performance.now()
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

async function openClients(url: string, headers: Record<string, string>, onMessage: (data: string) => void) {
  const sockets: WebSocket[] = []
  for (let i = 0; i < SUBSCRIBERS; i += 100)
    sockets.push(
      ...(await Promise.all(
        Array.from(
          { length: Math.min(100, SUBSCRIBERS - i) },
          () =>
            new Promise<WebSocket>((resolve, reject) => {
              const ws = new WebSocket(url, { headers } as any)
              ws.onmessage = (m) => onMessage(m.data as string)
              ws.onopen = () => resolve(ws)
              ws.onerror = () => reject(new Error(`could not open ${url}`))
            }),
        ),
      )),
    )
  return sockets
}

async function measure(publish: (i: number) => unknown, sent: number[], received: number[][]) {
  for (let i = 0; i < MESSAGES; i++) {
    sent[i] = now()
    publish(i)
    await Bun.sleep(INTERVAL_MS)
  }
  const until = Date.now() + 10_000
  while (received.reduce((n, r) => n + r.length, 0) < MESSAGES * SUBSCRIBERS && Date.now() < until)
    await Bun.sleep(20)
  const latencies = received.flatMap((r, i) => r.map((t) => t - sent[i]!)).sort((a, b) => a - b)
  return {
    delivered: latencies.length,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    max: latencies[latencies.length - 1]!,
  }
}

async function bare() {
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: (req, srv) => (srv.upgrade(req) ? undefined : new Response('no', { status: 400 })),
    websocket: {
      open: (ws) => {
        ws.subscribe('task')
      },
      message() {},
    },
  })
  const sent: number[] = []
  const received: number[][] = Array.from({ length: MESSAGES }, () => [])
  const sockets = await openClients(`ws://127.0.0.1:${server.port}/`, {}, (data) => {
    received[Number(/"seq":(\d+)/.exec(data)![1]) - 1]!.push(now())
  })
  const result = await measure(
    (i) =>
      server.publish(
        'task',
        JSON.stringify({
          type: 'LOG',
          task_id: 'task-b',
          seq: i + 1,
          timestamp: new Date().toISOString(),
          data: { i },
        }),
      ),
    sent,
    received,
  )
  for (const ws of sockets) ws.close()
  server.stop(true)
  return result
}

async function gantry() {
  const server = await startTestServer({ LOG_LEVEL: 'warn' })
  const owner = (await server.api('/api/me')).body.user_id
  const events = server.running.gantry.events
  await events.createStream('task-fanout', owner, 'task')
  const sent: number[] = []
  const received: number[][] = Array.from({ length: MESSAGES }, () => [])
  const sockets = await openClients(
    `${server.url.replace('http', 'ws')}/ws/task-fanout`,
    { authorization: `Bearer ${ADMIN_KEY}` },
    (data) => {
      received[Number(/"seq":(\d+)/.exec(data)![1]) - 1]!.push(now())
    },
  )
  const result = await measure(
    (i) => events.append('task-fanout', 'LOG', { level: 'info', message: `step ${i}` }),
    sent,
    received,
  )
  for (const ws of sockets) ws.close()
  await server.stop()
  return { ...result, database: server.databaseUrl ? 'postgres' : 'pglite' }
}

const base = await bare()
const ours = await gantry()
const fmt = (n: number) => n.toFixed(2)
console.log(`fan-out: ${SUBSCRIBERS} subscribers × ${MESSAGES} events, one every ${INTERVAL_MS} ms`)
console.table({
  'bare Bun.serve publish': {
    delivered: base.delivered,
    'p50 ms': fmt(base.p50),
    'p99 ms': fmt(base.p99),
    'max ms': fmt(base.max),
  },
  [`gantry (${ours.database})`]: {
    delivered: ours.delivered,
    'p50 ms': fmt(ours.p50),
    'p99 ms': fmt(ours.p99),
    'max ms': fmt(ours.max),
  },
})
console.log(
  `p99 ratio gantry/bare: ${(ours.p99 / base.p99).toFixed(1)}×; goal p99 ≤ 10 ms: ${ours.p99 <= 10 ? 'met' : 'NOT met'} (${fmt(ours.p99)} ms)`,
)
process.exit(0)
