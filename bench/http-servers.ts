/**
 * The three servers bench/http compares, each run in its own process:
 *   bare    — Bun.serve answering JSON by hand
 *   elysia  — a bare Elysia app with the same two routes
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
  console.error('usage: bun bench/http-servers.ts bare|elysia|gantry')
  process.exit(2)
}
