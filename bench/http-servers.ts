/**
 * The three servers bench/http compares, each run in its own process:
 *   bare    — Bun.serve answering JSON by hand
 *   elysia  — a bare Elysia app with the same two routes
 *   gantry  — the full app: every plugin, auth, validation, request logging (to stdout, discarded by the bench)
 * Prints `READY <url> <api key>` when listening.
 */
import { Elysia } from 'elysia'

const kind = process.argv[2]
const KEY = 'gk_0badc0de_bench-key-not-a-secret'
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
    .listen({ port: 0, hostname: '127.0.0.1' })
  console.log(`READY http://127.0.0.1:${app.server!.port} ${KEY}`)
} else if (kind === 'gantry') {
  const { serveGantryForBench } = await import('./lib/gantry-process.ts')
  await serveGantryForBench(KEY, { LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' })
} else {
  console.error('usage: bun bench/http-servers.ts bare|elysia|gantry')
  process.exit(2)
}
