/**
 * RSS per idle WebSocket at 10,000 connections: Gantry's WS /ws/:id beside a bare Bun.serve, each server in its
 * own process (so only the server is measured) and the clients in a third. Goal: ≤ 10 KB per connection.
 * Needs `ulimit -n` above 10,000 in each process (check with `ulimit -n`; a process cannot raise its hard limit).
 * Run: bun bench/ws-idle.bench.ts  [connections]
 */
import { ADMIN_KEY, startTestServer } from '../test/helpers.ts'

const role = process.argv[2]
const CONNECTIONS = Number(process.env.WS_IDLE_CONNECTIONS ?? 10_000)

const rss = () => {
  Bun.gc(true)
  return process.memoryUsage().rss
}
const lines = async function* (stream: ReadableStream<Uint8Array>) {
  let buffer = ''
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
    buffer += new TextDecoder().decode(chunk)
    for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
      yield buffer.slice(0, i)
      buffer = buffer.slice(i + 1)
    }
  }
}

/** A server process: prints `url <ws url>`, then `rss <bytes>` for every line read on stdin; stops at its end. */
async function serve(kind: string) {
  let url: string
  let stop = async () => {}
  if (kind === 'bare') {
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: (req, srv) => (srv.upgrade(req) ? undefined : new Response('no', { status: 400 })),
      websocket: { message() {} },
    })
    url = `ws://127.0.0.1:${server.port}/`
  } else {
    const server = await startTestServer({ LOG_LEVEL: 'warn' })
    const owner = (await server.api('/api/me')).body.user_id
    await server.running.gantry.events.createStream('task-idle', owner, 'task')
    url = `${server.url.replace('http', 'ws')}/ws/task-idle`
    stop = () => server.stop() // drops its throwaway database
  }
  console.log(`url ${url}`)
  for await (const _ of lines(Bun.stdin.stream())) console.log(`rss ${rss()}`)
  // stdin closed: the measurement is over.
  await stop()
  process.exit(0)
}

/** The client process: opens the connections, prints `open <n>`, holds them until stdin closes. */
async function clients(url: string) {
  const sockets: WebSocket[] = []
  for (let i = 0; i < CONNECTIONS; i += 500) {
    const batch = await Promise.allSettled(
      Array.from({ length: Math.min(500, CONNECTIONS - i) }, (_, j) => {
        // 10,000 connections to one port fit in the default ephemeral port range (about 28,000).
        return new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(url, { headers: { authorization: `Bearer ${ADMIN_KEY}` } } as any)
          ws.onopen = () => resolve(ws)
          ws.onerror = () => reject(new Error(`connection ${i + j} failed`))
        })
      }),
    )
    for (const r of batch) if (r.status === 'fulfilled') sockets.push(r.value)
  }
  console.log(`open ${sockets.length}`)
  for await (const _ of lines(Bun.stdin.stream())) {
  }
  process.exit(0)
}

async function measure(kind: string) {
  const server = Bun.spawn([process.execPath, import.meta.path, 'serve', kind], {
    stdin: 'pipe',
    stdout: 'pipe',
  })
  const out = lines(server.stdout)
  const next = async (prefix: string) => {
    for (;;) {
      const { value, done } = await out.next()
      if (done) throw new Error(`${kind} server exited`)
      if (value.startsWith(prefix)) return value.slice(prefix.length + 1)
    }
  }
  const url = await next('url')
  await Bun.sleep(500)
  server.stdin.write('rss\n')
  server.stdin.flush()
  const before = Number(await next('rss'))
  const client = Bun.spawn([process.execPath, import.meta.path, 'clients', url], {
    stdin: 'pipe',
    stdout: 'pipe',
  })
  const clientOut = lines(client.stdout)
  let opened = 0
  for (;;) {
    const { value, done } = await clientOut.next()
    if (done) break
    if (value.startsWith('open ')) {
      opened = Number(value.slice(5))
      break
    }
  }
  await Bun.sleep(1000)
  server.stdin.write('rss\n')
  server.stdin.flush()
  const after = Number(await next('rss'))
  client.stdin.end()
  client.kill()
  server.stdin.end() // the server stops itself (and drops its database); killed only if it hangs
  await Promise.race([server.exited, Bun.sleep(15_000).then(() => server.kill())])
  return { opened, before, after, perConnection: opened ? (after - before) / opened : Number.NaN }
}

if (role === 'serve') await serve(process.argv[3]!)
else if (role === 'clients') await clients(process.argv[3]!)
else {
  const limit = Bun.spawnSync(['sh', '-c', 'ulimit -n']).stdout.toString().trim()
  console.log(`ulimit -n: ${limit}; ${CONNECTIONS} idle connections per server`)
  const base = await measure('bare')
  const ours = await measure('gantry')
  const row = (r: typeof ours) => ({
    open: r.opened,
    'RSS before MB': (r.before / 2 ** 20).toFixed(1),
    'RSS after MB': (r.after / 2 ** 20).toFixed(1),
    'KB per connection': (r.perConnection / 1024).toFixed(2),
  })
  console.table({ 'bare Bun.serve': row(base), 'gantry WS /ws/:id': row(ours) })
  console.log(
    `ratio gantry/bare: ${(ours.perConnection / base.perConnection).toFixed(1)}×; goal ≤ 10 KB: ${ours.perConnection <= 10 * 1024 ? 'met' : 'NOT met'}`,
  )
  process.exit(0)
}
