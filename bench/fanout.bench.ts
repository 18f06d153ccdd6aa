/**
 * Fan-out: one stream, 1,000 WebSocket subscribers. Gantry (append → event log → WS /ws/:id) beside a bare
 * Bun.serve using server.publish, in one run: both servers up at once, measured in alternating rounds (bare,
 * Gantry, bare, Gantry…) so that a change in the machine's load hits both alike. Latency is from the publish
 * (append) call to each receipt; the 1,000 clients live in a process of their own (bench/lib/ws-clients.ts), for
 * both sides alike, so their work does not run on the server's thread. On a shared machine the latencies move
 * with the load; the server's CPU time per event (this process's, from the OS, over the round) holds still.
 * For Gantry the latency is also given from the commit's fan-out (an in-process subscriber's clock) to receipt:
 * the delivery path alone, without the Postgres round trip every append waits for before anyone sees it.
 * Goal: Gantry p99 ≤ 1.1× the bare publish.
 * Run: bun bench/fanout.bench.ts [rounds]  (DATABASE_URL set: against Postgres; else PGlite)
 */
import { ADMIN_KEY, startTestServer } from '../test/helpers.ts'
import { linesOf } from './lib/lines.ts'

const SUBSCRIBERS = 1000
const MESSAGES = 100
const INTERVAL_MS = 20
const ROUNDS = Number(process.argv[2] ?? 2)

const clock = () => performance.timeOrigin + performance.now()
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
const cpuMicros = () => {
  const { user, system } = process.cpuUsage()
  return user + system
}

interface Round {
  delivered: number
  p50: number
  p99: number
  max: number
  /** This process's CPU time per event while publishing, in µs (the 1,000 sends, and for Gantry the append). */
  cpuPerEvent: number
  /** Gantry: p50/p99 from the commit's fan-out (an in-process subscriber's clock) to receipt, without the commit. */
  fanOutP50?: number
  fanOutP99?: number
}

/**
 * Opens the subscribers in a separate process (bench/lib/ws-clients.ts), publishes MESSAGES events one every
 * INTERVAL_MS, and measures each receipt against its publish call on the shared high-resolution clock.
 */
async function measure(
  url: string,
  headers: Record<string, string>,
  publish: (i: number) => unknown,
  /** Filled during the run with when each event was fanned out (index seq - 1), if the server can say. */
  fannedOut?: number[],
): Promise<Round> {
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
  await Bun.sleep(200) // let the upgrades' garbage and the clients' start settle
  const sent: number[] = []
  const cpuBefore = cpuMicros()
  for (let i = 0; i < MESSAGES; i++) {
    sent[i] = clock()
    publish(i)
    await Bun.sleep(INTERVAL_MS)
  }
  const report = await lines.next()
  const cpu = cpuMicros() - cpuBefore
  await clients.exited
  const received = (JSON.parse(report.value as string) as { received: number[][] }).received
  const latencies = received.flatMap((r, i) => r.map((t) => t - sent[i]!)).sort((a, b) => a - b)
  const fromFanOut = fannedOut
    ? received.flatMap((r, i) => r.map((t) => t - fannedOut[i]!)).sort((a, b) => a - b)
    : undefined
  return {
    fanOutP50: fromFanOut && percentile(fromFanOut, 0.5),
    fanOutP99: fromFanOut && percentile(fromFanOut, 0.99),
    delivered: latencies.length,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    max: latencies[latencies.length - 1]!,
    cpuPerEvent: cpu / MESSAGES,
  }
}

const bareServer = Bun.serve({
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
let bareSeq = 0
const bare = () =>
  measure(`ws://127.0.0.1:${bareServer.port}/`, {}, (i) =>
    bareServer.publish(
      'task',
      JSON.stringify({
        type: 'LOG',
        task_id: 'task-b',
        seq: ++bareSeq,
        timestamp: new Date().toISOString(),
        data: { level: 'info', message: `step ${i}` },
      }),
    ),
  )

const server = await startTestServer({ LOG_LEVEL: 'warn' })
const owner = (await server.api('/api/me')).body.user_id
const events = server.running.gantry.events
let stream = 0
/** A fresh stream per round: the clients count seqs from 1. */
async function gantry() {
  const id = `task-fanout-${++stream}`
  await events.createStream(id, owner, 'task')
  // Subscribed before the sockets' hub: the channel hands it each committed event just before the hub publishes.
  const fannedOut: number[] = []
  const clockIn = events.subscribe(id, 0, (e) => {
    fannedOut[e.seq - 1] = clock()
  })
  const round = await measure(
    `${server.url.replace('http', 'ws')}/ws/${id}`,
    { authorization: `Bearer ${ADMIN_KEY}` },
    (i) => events.append(id, 'LOG', { level: 'info', message: `step ${i}` }),
    fannedOut,
  )
  clockIn.close()
  return round
}
const database = server.databaseUrl ? 'postgres' : 'pglite'

const bareRounds: Round[] = []
const ourRounds: Round[] = []
for (let r = 0; r < ROUNDS; r++) {
  bareSeq = 0
  bareRounds.push(await bare())
  ourRounds.push(await gantry())
}
await server.stop()
bareServer.stop(true)

const fmt = (n: number) => n.toFixed(2)
const row = (r: Round) => ({
  delivered: r.delivered,
  'p50 ms': fmt(r.p50),
  'p99 ms': fmt(r.p99),
  'max ms': fmt(r.max),
  'CPU µs/event': r.cpuPerEvent.toFixed(0),
  'from commit p50/p99 ms': r.fanOutP99 === undefined ? '' : `${fmt(r.fanOutP50!)} / ${fmt(r.fanOutP99)}`,
})
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
console.log(
  `fan-out: ${SUBSCRIBERS} subscribers × ${MESSAGES} events, one every ${INTERVAL_MS} ms; ${ROUNDS} alternating rounds`,
)
const table: Record<string, ReturnType<typeof row>> = {}
for (let r = 0; r < ROUNDS; r++) {
  table[`${r + 1}. bare Bun.serve publish`] = row(bareRounds[r]!)
  table[`${r + 1}. gantry (${database})`] = row(ourRounds[r]!)
}
console.table(table)
const p99Ratios = ourRounds.map((o, r) => o.p99 / bareRounds[r]!.p99)
const cpuRatios = ourRounds.map((o, r) => o.cpuPerEvent / bareRounds[r]!.cpuPerEvent)
const fanOutRatios = ourRounds.map((o, r) => o.fanOutP99! / bareRounds[r]!.p99)
console.log(
  `p99 gantry/bare per round: ${p99Ratios.map((x) => `${x.toFixed(2)}×`).join(', ')}; median ${median(p99Ratios).toFixed(2)}× (goal ≤ 1.1×: ${median(p99Ratios) <= 1.1 ? 'met' : 'NOT met'})`,
)
console.log(
  `p99 from the commit's fan-out (Gantry) / from publish (bare) per round: ${fanOutRatios.map((x) => `${x.toFixed(2)}×`).join(', ')}; median ${median(fanOutRatios).toFixed(2)}×`,
)
console.log(
  `server CPU per event gantry/bare per round: ${cpuRatios.map((x) => `${x.toFixed(2)}×`).join(', ')}; median ${median(cpuRatios).toFixed(2)}×`,
)
process.exit(0)
