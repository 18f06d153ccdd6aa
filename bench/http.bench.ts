/**
 * bench/http: the full Gantry app against a bare Bun.serve, the same bare server doing by hand what Gantry must
 * do for every request (request id in and out, one log line: "duties") and a bare Elysia, side by side in one
 * run, on GET /health, on an authenticated JSON route (GET /api/me) and, with DATABASE_URL, on the authenticated
 * DB-backed GET /tasks/:id (the baselines run the same one-row query). Prints requests/s and the ratios.
 * Goals (DESIGN.md): Gantry ≥ 0.85× bare Bun.serve on /health; GET /tasks/:id ≥ 20,000 req/s on Postgres.
 *
 * All four servers run at once, each in its own process, and the load runs in short rounds that alternate
 * between them; the median round counts. On a machine that is busy with other work, every server then sees
 * the same disturbance. Beside req/s it reports the server's own CPU time per request (from /proc), which
 * hardly depends on what else the machine does: its ratio is the capacity of one core, app against baseline.
 *   bun bench/http.bench.ts [rounds, default 3] [seconds per round, default 1]
 */
import { freshDatabase } from '../test/helpers.ts'
import { hasWrk, type LoadResult, runLoad } from './lib/load.ts'
import { cpuMicros, startServerProcess } from './lib/server-process.ts'

const rounds = Number(process.argv[2] ?? 3)
const seconds = Number(process.argv[3] ?? 1)
const kinds = ['bare', 'duties', 'elysia', 'gantry'] as const
const routes = [
  { name: 'GET /health', path: '/health', auth: false },
  { name: 'GET /api/me (auth)', path: '/api/me', auth: true },
]
const TASK_ROUTE = 'GET /tasks/:id (auth, DB)'

console.log(
  `load: ${hasWrk ? 'wrk, 1 thread, 64 connections' : 'fetch loop (install wrk for steadier figures)'}; ` +
    `${rounds} alternating rounds of ${seconds} s per server and route; medians`,
)
const database = await freshDatabase()
const servers = await Promise.all(
  kinds.map((kind) =>
    startServerProcess('http-servers.ts', [kind], database.url ? { DATABASE_URL: database.url } : {}),
  ),
)
if (database.url) {
  // One task to read back; with no model reachable it fails at once and stays still during the load.
  const gantry = servers[kinds.indexOf('gantry')]!
  const headers = { authorization: `Bearer ${gantry.extra}`, 'content-type': 'application/json' }
  const created = await fetch(`${gantry.url}/tasks`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ prompt: 'a task for bench/http to read' }),
  }).then((r) => r.json() as Promise<{ task_id: string }>)
  for (let tries = 0; tries < 300; tries++) {
    const { status } = await fetch(`${gantry.url}/tasks/${created.task_id}`, { headers }).then(
      (r) => r.json() as Promise<{ status: string }>,
    )
    if (!['queued', 'running'].includes(status)) break
    await Bun.sleep(100)
  }
  routes.push({ name: TASK_ROUTE, path: `/tasks/${created.task_id}`, auth: true })
} else console.log('GET /tasks/:id is measured only on Postgres: set DATABASE_URL')
const samples = new Map<string, (LoadResult & { cpuPerRequest?: number })[]>()
try {
  for (const i of kinds.keys())
    for (const route of routes)
      await runLoad({ url: servers[i]!.url + route.path, headers: auth(i, route.auth), seconds: 1 })
  for (let round = 0; round < rounds; round++)
    for (const route of routes)
      for (const [i, kind] of kinds.entries()) {
        const cpu0 = await cpuMicros(servers[i]!.pid)
        const result = await runLoad({
          url: servers[i]!.url + route.path,
          headers: auth(i, route.auth),
          seconds,
        })
        const cpu1 = await cpuMicros(servers[i]!.pid)
        const cpuPerRequest =
          cpu0 !== undefined && cpu1 !== undefined ? (cpu1 - cpu0) / result.requests : undefined
        const key = `${kind} ${route.name}`
        samples.set(key, [...(samples.get(key) ?? []), { ...result, cpuPerRequest }])
      }
} finally {
  await Promise.all(servers.map((s) => s.stop()))
  await database.drop()
}

function auth(i: number, needed: boolean) {
  return needed ? { authorization: `Bearer ${servers[i]!.extra}` } : undefined
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const med = (key: string, pick: (r: LoadResult & { cpuPerRequest?: number }) => number | undefined) =>
  median(samples.get(key)!.map((r) => pick(r) ?? Number.NaN))

const rows: string[][] = [
  [
    'route',
    'server',
    'req/s',
    'p50 ms',
    'p99 ms',
    'errors',
    'req/s × bare',
    'CPU µs/req',
    'capacity × bare',
    '× duties',
  ],
]
for (const route of routes) {
  const bare = med(`bare ${route.name}`, (r) => r.rps)
  const bareCpu = med(`bare ${route.name}`, (r) => r.cpuPerRequest)
  const dutiesCpu = med(`duties ${route.name}`, (r) => r.cpuPerRequest)
  for (const kind of kinds) {
    const key = `${kind} ${route.name}`
    const rps = med(key, (r) => r.rps)
    const errors = samples.get(key)!.reduce((n, r) => n + r.errors, 0)
    rows.push([
      route.name,
      kind,
      rps.toFixed(0),
      med(key, (r) => r.p50Ms).toFixed(2),
      med(key, (r) => r.p99Ms).toFixed(2),
      String(errors),
      (rps / bare).toFixed(2),
      med(key, (r) => r.cpuPerRequest).toFixed(1),
      (bareCpu / med(key, (r) => r.cpuPerRequest)).toFixed(2),
      (dutiesCpu / med(key, (r) => r.cpuPerRequest)).toFixed(2),
    ])
  }
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join('  '))
// Issue goals, as capacity (requests per CPU-second) against the bare server on the same route.
const GOALS: Record<string, number> = {
  'GET /health': 0.9,
  'GET /api/me (auth)': 0.85,
  [TASK_ROUTE]: 0.9,
}
console.log('')
for (const route of routes) {
  const cpu = (kind: string) => med(`${kind} ${route.name}`, (r) => r.cpuPerRequest)
  const capacity = cpu('bare') / cpu('gantry')
  console.log(
    `Gantry ${route.name}: ${capacity.toFixed(2)}× bare in requests per CPU-second (goal ≥ ${GOALS[route.name]}), ` +
      `${(cpu('duties') / cpu('gantry')).toFixed(2)}× the bare server doing Gantry's per-request duties, ` +
      `which is itself ${(cpu('bare') / cpu('duties')).toFixed(2)}× bare`,
  )
}
if (samples.has(`gantry ${TASK_ROUTE}`))
  console.log(
    `Gantry GET /tasks/:id on Postgres: ${med(`gantry ${TASK_ROUTE}`, (r) => r.rps).toFixed(0)} req/s (goal ≥ 20,000)`,
  )
