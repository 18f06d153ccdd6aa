/**
 * bench/proxy: what the shipped nginx.conf (TLS, HTTP/1.1 keep-alive upstream) costs, beside the app reached
 * directly, in one run against one Gantry: requests per second (wrk) on GET /health and GET /api/me, WebSocket
 * fan-out p99 (one stream, 500 subscribers in a process of their own, wss through nginx or ws direct), and SSE
 * first-event latency (a new stream request until its first event arrives, TLS handshake included via nginx).
 * The one change to nginx.conf beyond ports and paths: its per-client rate limits are lifted, as every request
 * here comes from one address. Bounded well under a minute.
 *   bun bench/proxy.bench.ts   (DATABASE_URL set: Postgres; else PGlite)
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { ADMIN_KEY, startTestServer, tempDir } from '../test/helpers.ts'
import { HAVE_NGINX, startNginx } from '../test/nginx-harness.ts'
import { linesOf } from './lib/lines.ts'
import { hasWrk, type LoadResult, runLoad } from './lib/load.ts'

const ROUNDS = 2
const SECONDS = 2
const SUBSCRIBERS = 500
const MESSAGES = 50
const INTERVAL_MS = 20
const SSE_OPENS = 40

if (!HAVE_NGINX) {
  console.log('bench/proxy: skipped, nginx and openssl are needed')
  process.exit(0)
}

const clock = () => performance.timeOrigin + performance.now()
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const dir = tempDir('gantry-bench-proxy-')
const server = await startTestServer({ LOG_LEVEL: 'warn', CODE_EXECUTION: 'off' })
const nginx = await startNginx(dir, [server.running.server.port!], { rateLimits: false })
const targets = { direct: server.url, nginx: nginx.https }
const auth = { authorization: `Bearer ${ADMIN_KEY}` }

try {
  // ---- requests per second ------------------------------------------------------------------------------
  const routes = [
    { name: 'GET /health', path: '/health', headers: {} },
    { name: 'GET /api/me (auth)', path: '/api/me', headers: auth },
  ]
  const samples = new Map<string, LoadResult[]>()
  for (const base of Object.values(targets))
    await runLoad({ url: base + routes[0]!.path, seconds: 1, connections: 32 }) // warm both paths
  for (let round = 0; round < ROUNDS; round++)
    for (const route of routes)
      for (const [via, base] of Object.entries(targets)) {
        const r = await runLoad({
          url: base + route.path,
          headers: route.headers,
          seconds: SECONDS,
          connections: 32,
        })
        const key = `${route.name}|${via}`
        samples.set(key, [...(samples.get(key) ?? []), r])
      }

  // ---- WebSocket fan-out --------------------------------------------------------------------------------
  const owner = (await server.api('/api/me')).body.user_id as string
  const events = server.running.gantry.events
  const fanout = async (via: keyof typeof targets, messages = MESSAGES) => {
    const stream = `task-proxy-${via}-${messages}`
    await events.createStream(stream, owner, 'task')
    const url = `${targets[via].replace(/^http/, 'ws')}/ws/${stream}`
    const clients = Bun.spawn(
      [
        process.execPath,
        join(import.meta.dir, 'lib/ws-clients.ts'),
        url,
        String(SUBSCRIBERS),
        String(messages),
        String(messages * INTERVAL_MS + 15_000),
      ],
      {
        env: {
          ...process.env,
          GANTRY_BENCH_HEADERS: JSON.stringify({ ...auth, origin: targets[via] }),
          NODE_EXTRA_CA_CERTS: join(dir, 'fullchain.pem'),
        },
        stdout: 'pipe',
        stderr: 'inherit',
      },
    )
    const reader = linesOf(clients.stdout)
    const first = await reader.next()
    if (first.value !== 'OPEN') throw new Error(`fan-out clients (${via}) did not open: ${first.value}`)
    const sent: number[] = []
    for (let i = 0; i < messages; i++) {
      sent[i] = clock()
      events.append(stream, 'LOG', { level: 'info', message: `step ${i}` })
      await Bun.sleep(INTERVAL_MS)
    }
    const report = JSON.parse((await reader.next()).value as string) as { received: number[][] }
    await clients.exited
    const latencies = report.received.flatMap((r, i) => r.map((t) => t - sent[i]!)).sort((a, b) => a - b)
    return { delivered: latencies.length, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99) }
  }
  await fanout('direct', 10) // warm-up, not counted: the first sockets of the run pay for cold code
  const fan = { direct: await fanout('direct'), nginx: await fanout('nginx') }

  // ---- SSE first event ------------------------------------------------------------------------------------
  const sseStream = 'task-proxy-sse'
  await events.createStream(sseStream, owner, 'task')
  await events.append(sseStream, 'LOG', { level: 'info', message: 'the first event' })
  const firstEvent = async (via: keyof typeof targets) => {
    const times: number[] = []
    for (let i = 0; i < SSE_OPENS; i++) {
      const abort = new AbortController()
      const started = performance.now()
      const res = await fetch(`${targets[via]}/api/streams/${sseStream}/events`, {
        headers: auth,
        signal: abort.signal,
        tls: { ca: nginx.ca },
      } as RequestInit)
      const reader = res.body!.getReader()
      let text = ''
      while (!text.includes('data:')) {
        const { value, done } = await reader.read()
        if (done) throw new Error(`SSE (${via}) ended before its first event`)
        text += new TextDecoder().decode(value)
      }
      times.push(performance.now() - started)
      abort.abort()
      await reader.cancel().catch(() => {})
    }
    times.sort((a, b) => a - b)
    return { p50: percentile(times, 0.5), p99: percentile(times, 0.99) }
  }
  const sse = { direct: await firstEvent('direct'), nginx: await firstEvent('nginx') }

  // ---- report ---------------------------------------------------------------------------------------------
  const fmt = (n: number | undefined) => (n === undefined ? '–' : n.toFixed(2))
  console.log(
    `bench/proxy: one Gantry (${server.databaseUrl ? 'Postgres' : 'PGlite'}), direct (http) beside the shipped nginx.conf (https); ` +
      `${hasWrk ? 'wrk' : 'fetch loop'}, 32 connections, ${ROUNDS} rounds of ${SECONDS} s, medians`,
  )
  const rows: Record<string, Record<string, string | number>> = {}
  for (const route of routes) {
    const direct = median(samples.get(`${route.name}|direct`)!.map((r) => r.rps))
    for (const via of Object.keys(targets)) {
      const runs = samples.get(`${route.name}|${via}`)!
      const rps = median(runs.map((r) => r.rps))
      rows[`${route.name} ${via}`] = {
        'req/s': Math.round(rps),
        'p50 ms': fmt(median(runs.map((r) => r.p50Ms ?? Number.NaN))),
        'p99 ms': fmt(median(runs.map((r) => r.p99Ms ?? Number.NaN))),
        errors: runs.reduce((a, r) => a + r.errors, 0),
        '× direct': (rps / direct).toFixed(2),
      }
    }
  }
  console.table(rows)
  console.log(
    `WebSocket fan-out: ${SUBSCRIBERS} subscribers × ${MESSAGES} events, one every ${INTERVAL_MS} ms`,
  )
  console.table(
    Object.fromEntries(
      Object.entries(fan).map(([via, f]) => [
        via,
        { delivered: `${f.delivered}/${SUBSCRIBERS * MESSAGES}`, 'p50 ms': fmt(f.p50), 'p99 ms': fmt(f.p99) },
      ]),
    ),
  )
  console.log(
    `SSE first-event latency: ${SSE_OPENS} new streams each (connection, TLS via nginx, replay of seq 1)`,
  )
  console.table(
    Object.fromEntries(
      Object.entries(sse).map(([via, s]) => [via, { 'p50 ms': fmt(s.p50), 'p99 ms': fmt(s.p99) }]),
    ),
  )
} finally {
  await nginx.stop()
  await server.stop()
  rmSync(dir, { recursive: true, force: true })
}
