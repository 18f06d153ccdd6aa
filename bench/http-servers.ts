/**
 * The three servers bench/http compares, each run in its own process:
 *   bare    — Bun.serve answering JSON by hand
 *   elysia  — a bare Elysia app with the same two routes
 *   duties  — Bun.serve doing by hand only what Gantry must do for every request: read the URL (the path for the
 *             log line), honour an incoming x-request-id or make one, answer it in a header, and write one JSON
 *             log line through the same LineWriter; the floor under any framework that keeps those duties
 *   gantry  — the full app: every plugin, auth, validation, request logging (to stdout, discarded by the bench)
 * With DATABASE_URL, bare and elysia also serve GET /tasks/:id with the one query Gantry runs for it.
 * Prints `READY <url> <api key>` when listening.
 */
import { Elysia } from 'elysia'
import postgres from 'postgres'

const kind = process.argv[2]
const KEY = 'gk_0badc0de_bench-key-not-a-secret'
// The DB-backed route: the same one-row query Gantry's GET /tasks/:id runs, on the database Gantry migrated.
const sql = process.env.DATABASE_URL
  ? postgres(process.env.DATABASE_URL, { max: 10, onnotice: () => {} })
  : undefined
const taskRow = async (id: string) => (await sql!`select * from tasks where id = ${id}`)[0]
const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })

if (kind === 'bare') {
  // The fastest plain Bun.serve: Bun's native router, no URL parsing in JavaScript.
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    routes: {
      '/health': () => json({ status: 'ok' }),
      '/api/me': (req) =>
        req.headers.get('authorization') === `Bearer ${KEY}`
          ? json({ user: 'admin', role: 'admin' })
          : json({ error: 'unauthorized' }, 401),
      '/tasks/:id': async (req) => {
        if (req.headers.get('authorization') !== `Bearer ${KEY}`) return json({ error: 'unauthorized' }, 401)
        const row = await taskRow(req.params.id)
        return row ? json(row) : json({ error: 'not_found' }, 404)
      },
    },
    fetch: () => json({ error: 'not_found' }, 404),
  })
  console.log(`READY http://127.0.0.1:${server.port} ${KEY}`)
} else if (kind === 'duties') {
  const { LineWriter } = await import('../src/core/logger.ts')
  const out = new LineWriter(1)
  const prefix = crypto.randomUUID().slice(0, 8)
  let counter = 0
  /** The duties around a handler: request id in and out, one log line with the path, method and status. */
  const duties =
    (handler: (req: Request & { params: Record<string, string> }) => Response | Promise<Response>) =>
    (req: Request & { params: Record<string, string> }) => {
      const started = performance.now()
      const url = req.url
      const incoming = req.headers.get('x-request-id')
      const id =
        incoming && /^[\w.:-]{1,128}$/.test(incoming) ? incoming : `${prefix}-${(++counter).toString(36)}`
      const finish = (res: Response) => {
        res.headers.set('x-request-id', id)
        const start = url.indexOf('/', 8)
        const q = url.indexOf('?', start)
        const path = q === -1 ? url.slice(start) : url.slice(start, q)
        const ms = Math.round((performance.now() - started) * 100) / 100
        out.write(
          `{"level":30,"lvl":"info","time":${Date.now()},"reqId":"${id}","method":"${req.method}","path":${JSON.stringify(path)},"status":${res.status},"ms":${ms},"msg":"request"}\n`,
        )
        return res
      }
      const res = handler(req)
      return res instanceof Promise ? res.then(finish) : finish(res)
    }
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    routes: {
      '/health': duties(() => json({ status: 'ok' })),
      '/api/me': duties((req) =>
        req.headers.get('authorization') === `Bearer ${KEY}`
          ? json({ user: 'admin', role: 'admin' })
          : json({ error: 'unauthorized' }, 401),
      ),
      '/tasks/:id': duties(async (req) => {
        if (req.headers.get('authorization') !== `Bearer ${KEY}`) return json({ error: 'unauthorized' }, 401)
        const row = await taskRow(req.params.id!)
        return row ? json(row) : json({ error: 'not_found' }, 404)
      }),
    },
    fetch: () => json({ error: 'not_found' }, 404),
  })
  console.log(`READY http://127.0.0.1:${server.port} ${KEY}`)
} else if (kind === 'elysia') {
  const app = new Elysia()
    .get('/health', () => ({ status: 'ok' }))
    .get('/api/me', ({ headers, status }) =>
      headers.authorization === `Bearer ${KEY}`
        ? { user: 'admin', role: 'admin' }
        : status(401, { error: 'unauthorized' }),
    )
    .get('/tasks/:id', async ({ headers, params, status }) => {
      if (headers.authorization !== `Bearer ${KEY}`) return status(401, { error: 'unauthorized' })
      return (await taskRow(params.id)) ?? status(404, { error: 'not_found' })
    })
    .listen({ port: 0, hostname: '127.0.0.1' })
  console.log(`READY http://127.0.0.1:${app.server!.port} ${KEY}`)
} else if (kind === 'gantry') {
  const { serveGantryForBench } = await import('./lib/gantry-process.ts')
  await serveGantryForBench(KEY, {
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
    OLLAMA_HOST: 'http://127.0.0.1:9',
  })
} else {
  console.error('usage: bun bench/http-servers.ts bare|duties|elysia|gantry')
  process.exit(2)
}
