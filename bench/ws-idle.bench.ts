/**
 * RSS per idle WebSocket at 10,000 connections: Gantry's WS /ws/:id beside a bare Bun.serve, each server in its
 * own process (so only the server is measured) and the clients in a third. Goal: ≤ 4 KB per connection.
 * RSS after a burst of upgrades moves for seconds while the allocators hand the burst's garbage back, so each
 * server is sampled (after a full GC) every half second: "at 1 s" is the first sample after the last socket
 * opened, "settled" the lowest over SETTLE_MS, against the lowest before. Also the live JavaScript heap per
 * socket and its objects (bun:jsc heapStats), which do not move with the allocators.
 * Needs `ulimit -n` above 10,000 in each process (check with `ulimit -n`; a process cannot raise its hard limit).
 * Run: bun bench/ws-idle.bench.ts   (WS_IDLE_CONNECTIONS=n for another count; DATABASE_URL for Postgres)
 */
import { heapStats } from 'bun:jsc'
import { ADMIN_KEY, startTestServer } from '../test/helpers.ts'

const role = process.argv[2]
const CONNECTIONS = Number(process.env.WS_IDLE_CONNECTIONS ?? 10_000)

const SETTLE_MS = 4000
const sample = () => {
  Bun.gc(true)
  const heap = heapStats()
  return `${process.memoryUsage().rss} ${heap.heapSize} ${heap.objectCount}`
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

/** A server process: prints `url <ws url>`, then `rss <rss> <heap bytes> <objects>` for every line read on stdin; stops at its end. */
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
  for await (const _ of lines(Bun.stdin.stream())) console.log(`rss ${sample()}`)
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
  const read = async () => {
    server.stdin.write('rss\n')
    server.stdin.flush()
    const [rss, heap, objects] = (await next('rss')).split(' ').map(Number) as [number, number, number]
    return { rss, heap, objects }
  }
  /** Samples every 500 ms for `ms`: the first one and the lowest RSS. */
  const settle = async (ms: number) => {
    const first = await read()
    let low = first.rss
    for (let t = 0; t < ms; t += 500) {
      await Bun.sleep(500)
      low = Math.min(low, (await read()).rss)
    }
    return { first, low }
  }
  await Bun.sleep(500)
  const before = await settle(1500)
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
  const after = await settle(SETTLE_MS)
  client.stdin.end()
  client.kill()
  server.stdin.end() // the server stops itself (and drops its database); killed only if it hangs
  await Promise.race([server.exited, Bun.sleep(15_000).then(() => server.kill())])
  const per = (n: number) => (opened ? n / opened : Number.NaN)
  return {
    opened,
    before: before.low,
    atOneSecond: per(after.first.rss - before.first.rss),
    settled: per(after.low - before.low),
    heap: per(after.first.heap - before.first.heap),
    objects: per(after.first.objects - before.first.objects),
  }
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
    'KB/conn at 1 s': (r.atOneSecond / 1024).toFixed(2),
    'KB/conn settled': (r.settled / 1024).toFixed(2),
    'JS heap B/conn': r.heap.toFixed(0),
    'objects/conn': r.objects.toFixed(1),
  })
  console.table({ 'bare Bun.serve': row(base), 'gantry WS /ws/:id': row(ours) })
  console.log(
    `ratio gantry/bare settled: ${(ours.settled / base.settled).toFixed(1)}×; goal ≤ 4 KB: ${ours.settled <= 4 * 1024 ? 'met' : 'NOT met'} settled (${(ours.settled / 1024).toFixed(2)} KB), ${ours.atOneSecond <= 4 * 1024 ? 'met' : 'NOT met'} at 1 s (${(ours.atOneSecond / 1024).toFixed(2)} KB)`,
  )
  process.exit(0)
}
