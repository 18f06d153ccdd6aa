/**
 * bench/http-hooks: what each global hook of the HTTP layer costs per request, in-process and without sockets,
 * so the figures hold still on a busy machine. Each hook of the real app (every plugin loaded, PGlite in memory,
 * request lines written to a sink) is called directly on a real Request, many times; then whole requests go
 * through `app.handle` beside a bare Elysia app answering the same routes. CPU nanoseconds per call, medians of
 * a few rounds. The network side (Bun's parser, the socket, the log line's write) is bench/http.bench.ts's.
 *   bun bench/http-hooks.bench.ts [calls per round, default 50000]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { Elysia } from 'elysia'
import { loadConfig } from '../src/config.ts'
import { PrincipalBody } from '../src/core/auth.ts'
import { observeHttpRequest } from '../src/core/metrics.ts'
import { startGantry } from '../src/server.ts'

const N = Number(process.argv[2] ?? 50_000)
const KEY = 'gk_0badc0de_bench-key-not-a-secret'
const dataDir = mkdtempSync(join(tmpdir(), 'gantry-hooks-'))
const config = loadConfig({
  ...process.env,
  PORT: '0',
  HOST: '127.0.0.1',
  ADMIN_API_KEY: KEY,
  DATA_DIR: dataDir,
  LOG_LEVEL: 'info',
  OLLAMA_HOST: 'http://127.0.0.1:9',
  // In memory, whatever DATABASE_URL says: this bench never touches the network, and must not migrate a real database.
  DATABASE_URL: '',
})
const running = await startGantry(config, { pgliteDir: 'memory://', logDestination: { write() {} } as never })
const app = running.app
const gantry = running.gantry
const bare = new Elysia()
  .get('/health', () => ({ status: 'ok' }))
  .get('/api/me', ({ headers, status }) =>
    headers.authorization === `Bearer ${KEY}`
      ? { user: 'admin', role: 'admin' }
      : status(401, { error: 'unauthorized' }),
  )

const cpuNow = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) * 1000
}
/** Median CPU ns per call of `fn` over 5 rounds of N calls (after a warm-up round). */
async function time(fn: (i: number) => unknown, n = N): Promise<number> {
  const rounds: number[] = []
  for (let r = 0; r < 6; r++) {
    const t0 = cpuNow()
    for (let i = 0; i < n; i++) {
      const out = fn(i)
      if (out instanceof Promise) await out
    }
    if (r > 0) rounds.push((cpuNow() - t0) / n)
  }
  return rounds.sort((a, b) => a - b)[2]!
}

const request = (path: string, auth = false) =>
  new Request(`http://127.0.0.1${path}`, auth ? { headers: { authorization: `Bearer ${KEY}` } } : {})
const context = (req: Request) => ({
  request: req,
  set: { headers: Object.create(null) as Record<string, string>, status: 200 },
  gantry,
  path: '/health',
  route: '/health',
  response: { status: 'ok' },
})
const hook = (event: string, i = 0) =>
  (app.event as Record<string, { fn: (c: unknown) => unknown }[]>)[event]![i]!.fn as (c: unknown) => unknown
const meRoute = app.routes.find((r) => r.method === 'GET' && r.path === '/api/me')!
const authResolve = (meRoute.hooks as { beforeHandle: { fn: (c: unknown) => unknown }[] }).beforeHandle[0]!.fn
const principalCheck = TypeCompiler.Compile(PrincipalBody)
const principal = {
  user_id: 'u',
  user: 'admin',
  role: 'admin',
  key_id: 'k',
  key_name: 'n',
  via: 'api_key',
} as const

await app.handle(request('/api/me', true)) // the key is verified once, then cached
const rows: [string, number][] = []
const reqs = Array.from({ length: 1024 }, () => request('/health'))
const authed = Array.from({ length: 1024 }, () => request('/api/me', true))
const ctxs = reqs.map(context)
rows.push(['new Request() (the test harness, not a hook)', await time(() => request('/health'))])
rows.push([
  'onRequest: request id, CORS, URL check',
  await time((i) => hook('request')(context(reqs[i & 1023]!))),
])
rows.push([
  'request.headers, first read (Bun builds the Headers)',
  (await time(() => request('/health').headers.get('x'))) - rows[0]![1],
])
rows.push([
  'mapResponse: the log line + metrics (once per request)',
  (await time((i) => {
    const c = ctxs[i & 1023]!
    hook('request')(c) // sets the per-request state the line reads
    return hook('mapResponse')(c)
  })) - rows[1]![1],
])
rows.push([
  '  of which the line (logRequest)',
  await time(() =>
    gantry.logRequest({ reqId: 'ab12cd34-1z', method: 'GET', path: '/health', status: 200, ms: 0.07 }),
  ),
])
rows.push([
  '  of which the histogram (observeHttpRequest)',
  await time(() => observeHttpRequest('GET', '/health', 200, 0.07)),
])
rows.push([
  'auth macro resolve, cached key (GET /api/me)',
  await time((i) => authResolve({ gantry, request: authed[i & 1023]! })),
])
rows.push(['response validation (PrincipalBody Check)', await time(() => principalCheck.Check(principal))])
const n = Math.min(N, 100_000)
const whole = {
  gantryHealth: await time(() => app.handle(request('/health')), n),
  bareHealth: await time(() => bare.handle(request('/health')), n),
  gantryMe: await time(() => app.handle(request('/api/me', true)), n),
  bareMe: await time(() => bare.handle(request('/api/me', true)), n),
}
rows.push(['whole GET /health through app.handle: Gantry', whole.gantryHealth])
rows.push(['whole GET /health through app.handle: bare Elysia', whole.bareHealth])
rows.push(['whole GET /api/me through app.handle: Gantry', whole.gantryMe])
rows.push(['whole GET /api/me through app.handle: bare Elysia', whole.bareMe])
await running.stop()
rmSync(dataDir, { recursive: true, force: true })
const width = Math.max(...rows.map(([name]) => name.length))
console.log(`${'hook'.padEnd(width)}  CPU ns per call (median of 5 rounds of ${N})`)
for (const [name, ns] of rows) console.log(`${name.padEnd(width)}  ${ns.toFixed(0).padStart(6)}`)
console.log(
  `\nin-process capacity × bare Elysia: /health ${(whole.bareHealth / whole.gantryHealth).toFixed(2)}, /api/me ${(whole.bareMe / whole.gantryMe).toFixed(2)}`,
)
process.exit(0)
