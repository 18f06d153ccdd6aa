/**
 * Fan-out: one stream, 1,000 WebSocket subscribers. Gantry (append → event log → WS /ws/:id) beside a bare
 * Bun.serve using server.publish, in one run. Latency is from the publish (append) call to each receipt; the
 * 1,000 clients live in a process of their own (bench/lib/ws-clients.ts), for both sides alike, so their work
 * does not run on the server's thread. Goal: Gantry p99 ≤ 10 ms.
 * Run: bun bench/fanout.bench.ts  (DATABASE_URL set: against Postgres; else PGlite)
 */
import { ADMIN_KEY, startTestServer } from '../test/helpers.ts'
import { linesOf } from './lib/lines.ts'

const SUBSCRIBERS = 1000
const MESSAGES = 100
const INTERVAL_MS = 20

const clock = () => performance.timeOrigin + performance.now()
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

/**
 * Opens the subscribers in a separate process (bench/lib/ws-clients.ts), publishes MESSAGES events one every
 * INTERVAL_MS, and measures each receipt against its publish call on the shared high-resolution clock.
 */
async function measure(url: string, headers: Record<string, string>, publish: (i: number) => unknown) {
  const clients = Bun.spawn(
    [
      process.execPath,
      `${import.meta.dir}/lib/ws-clients.ts`,
      url,
      String(SUBSCRIBERS),
      String(MESSAGES),
      String(MESSAGES * INTERVAL_MS + 10_000),
    ],
    {
      env: { ...process.env, GANTRY_BENCH_HEADERS: JSON.stringify(headers) },
      stdout: 'pipe',
      stderr: 'inherit',
    },
  )
  const lines = linesOf(clients.stdout)
  const first = await lines.next()
  if (first.value !== 'OPEN') throw new Error(`the clients did not open: ${first.value}`)
  const sent: number[] = []
  for (let i = 0; i < MESSAGES; i++) {
    sent[i] = clock()
    publish(i)
    await Bun.sleep(INTERVAL_MS)
  }
  const report = await lines.next()
  await clients.exited
  const received = (JSON.parse(report.value as string) as { received: number[][] }).received
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
  const result = await measure(`ws://127.0.0.1:${server.port}/`, {}, (i) =>
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
  )
  server.stop(true)
  return result
}

async function gantry() {
  const server = await startTestServer({ LOG_LEVEL: 'warn' })
  const owner = (await server.api('/api/me')).body.user_id
  const events = server.running.gantry.events
  await events.createStream('task-fanout', owner, 'task')
  const result = await measure(
    `${server.url.replace('http', 'ws')}/ws/task-fanout`,
    { authorization: `Bearer ${ADMIN_KEY}` },
    (i) => events.append('task-fanout', 'LOG', { level: 'info', message: `step ${i}` }),
  )
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
