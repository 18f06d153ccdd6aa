/**
 * The servers bench/http-deno compares on Deno, each in its own process (run with Deno, see bin/deno.mjs):
 *   deno-bare   — Deno.serve answering JSON by hand
 *   deno-gantry — the full app on Deno: every plugin, auth, validation, request logging
 * Prints `READY <url> <api key>` when listening.
 */
const kind = process.argv[2]
const KEY = 'gk_0badc0de_bench-key-not-a-secret'
const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })

interface DenoServe {
  serve(
    options: { port: number; hostname: string; onListen?: () => void },
    handler: (request: Request) => Response,
  ): { addr: { port: number } }
}

if (kind === 'deno-bare') {
  const server = (globalThis as unknown as { Deno: DenoServe }).Deno.serve(
    { port: 0, hostname: '127.0.0.1', onListen: () => {} },
    (req) => {
      const path = new URL(req.url).pathname
      if (path === '/health') return json({ status: 'ok' })
      if (path === '/api/me')
        return req.headers.get('authorization') === `Bearer ${KEY}`
          ? json({ user: 'admin', role: 'admin' })
          : json({ error: 'unauthorized' }, 401)
      return json({ error: 'not_found' }, 404)
    },
  )
  console.log(`READY http://127.0.0.1:${server.addr.port} ${KEY}`)
} else if (kind === 'deno-gantry') {
  const { serveGantryForBench } = await import('./lib/gantry-process.ts')
  await serveGantryForBench(KEY, {
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
    OLLAMA_HOST: 'http://127.0.0.1:9',
  })
} else {
  console.error('usage: deno run -A bench/http-deno-servers.ts deno-bare|deno-gantry')
  process.exit(2)
}

export {}
