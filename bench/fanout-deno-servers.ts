/**
 * The publishers bench/fanout-deno compares, each in its own process, on Bun (`bun …`) or on Deno (`deno run -A
 * …`), whichever runs this file:
 *   bare   — the runtime's own server and WebSockets: Bun.serve with server.publish, or Deno.serve with
 *            Deno.upgradeWebSocket and a loop over the open sockets
 *   gantry — the full app: WS /ws/:id on one task stream, events appended through the event log
 * Prints `READY <ws url> <api key>` when listening; on a `GO <messages> <interval ms>` line on stdin it publishes
 * that many events, one every interval, and prints `SENT [t, …]` (the publish calls' times, performance.timeOrigin
 * + now, comparable across processes on one machine).
 */
import { rmSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

const kind = process.argv[2]
const KEY = 'gk_0badc0de_bench-key-not-a-secret'
const STREAM = 'task-fanout'
const clock = () => performance.timeOrigin + performance.now()

interface DenoApi {
  serve(
    options: { port: number; hostname: string; onListen?: () => void },
    handler: (request: Request) => Response,
  ): { addr: { port: number } }
  upgradeWebSocket(request: Request): { socket: WebSocket; response: Response }
}
const deno = (globalThis as unknown as { Deno?: DenoApi }).Deno

/** A frame shaped like Gantry's, so both sides send about the same bytes. */
const frame = (i: number) =>
  JSON.stringify({
    type: 'LOG',
    task_id: STREAM,
    seq: i + 1,
    timestamp: new Date().toISOString(),
    data: { level: 'info', message: `step ${i}` },
  })

/** A bare broadcaster: the runtime's own WebSocket server, every frame to every open socket. */
function bare(): { url: string; publish: (i: number) => unknown; stop: () => Promise<void> } {
  if (deno) {
    const sockets = new Set<WebSocket>()
    const server = deno.serve({ port: 0, hostname: '127.0.0.1', onListen: () => {} }, (request) => {
      if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket')
        return new Response('no', { status: 400 })
      const { socket, response } = deno.upgradeWebSocket(request)
      socket.onopen = () => sockets.add(socket)
      socket.onclose = () => sockets.delete(socket)
      return response
    })
    return {
      url: `ws://127.0.0.1:${server.addr.port}/`,
      publish: (i) => {
        const text = frame(i)
        for (const socket of sockets) socket.send(text)
      },
      stop: async () => {},
    }
  }
  const server = Bun.serve({
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
  return {
    url: `ws://127.0.0.1:${server.port}/`,
    publish: (i) => server.publish('task', frame(i)),
    stop: async () => {
      server.stop(true)
    },
  }
}

/** The full app on this runtime, on PGlite in memory unless DATABASE_URL names a Postgres server. */
async function gantry() {
  const { startGantryForBench } = await import('./lib/gantry-process.ts')
  const { running, dataDir } = await startGantryForBench(KEY, {
    LOG_LEVEL: 'warn',
    OLLAMA_HOST: 'http://127.0.0.1:9',
  })
  const base = `http://127.0.0.1:${running.server.port}`
  const me = (await (
    await fetch(`${base}/api/me`, { headers: { authorization: `Bearer ${KEY}` } })
  ).json()) as {
    user_id: string
  }
  const events = running.gantry.events
  // Warm the append path (the database, the JIT) on a stream of its own: the measured one starts at seq 1.
  await events.createStream(`${STREAM}-warm-up`, me.user_id, 'task')
  for (let i = 0; i < 50; i++)
    await events.append(`${STREAM}-warm-up`, 'LOG', { level: 'info', message: 'warm' })
  await events.createStream(STREAM, me.user_id, 'task')
  return {
    url: `${base.replace('http', 'ws')}/ws/${STREAM}`,
    publish: (i: number) => events.append(STREAM, 'LOG', { level: 'info', message: `step ${i}` }),
    stop: async () => {
      await running.stop()
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

if (kind !== 'bare' && kind !== 'gantry') {
  console.error('usage: bun|deno run -A bench/fanout-deno-servers.ts bare|gantry')
  process.exit(2)
}
const side = kind === 'bare' ? bare() : await gantry()
process.stdout.write(`READY ${side.url} ${KEY}\n`)

let input = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', async (chunk: string) => {
  input += chunk
  const go = /GO (\d+) (\d+)\n/.exec(input)
  if (!go) return
  input = ''
  const sent: number[] = []
  for (let i = 0; i < Number(go[1]); i++) {
    sent[i] = clock()
    side.publish(i)
    await sleep(Number(go[2]))
  }
  process.stdout.write(`SENT ${JSON.stringify(sent)}\n`)
})
process.on('SIGTERM', async () => {
  await side.stop()
  process.exit(0)
})
