/**
 * The two relays bench/chat compares, each in its own process, both reading the same simulated Ollama with the
 * real `ollama` client and writing WebSocket frames:
 *   bare    — Bun.serve: on a `chat` frame, stream the model's answer and send each chunk as a frame
 *   gantry  — the full app: WS /ws/chat/:id, the chat job, the event log in Postgres (or PGlite), NOTIFY, replay
 * Env: OLLAMA_HOST (and DATABASE_URL for gantry). Prints `READY <url> <api key>` when listening.
 */
import { Ollama } from 'ollama'

const kind = process.argv[2]
// A bench killed midway must not leave its relay running: follow the parent out.
const parent = process.ppid
setInterval(() => process.ppid !== parent && process.exit(0), 1000).unref()
const KEY = 'gk_0badc0de_bench-key-not-a-secret'

if (kind === 'bare') {
  const ollama = new Ollama({ host: process.env.OLLAMA_HOST })
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch(req, srv) {
      if (srv.upgrade(req)) return
      return new Response('upgrade required', { status: 426 })
    },
    websocket: {
      open(ws) {
        ws.send(JSON.stringify({ type: 'connected' }))
      },
      async message(ws, raw) {
        const frame = JSON.parse(String(raw))
        if (frame.type !== 'chat') return
        const stream = await ollama.chat({
          model: 'llama3.2',
          messages: [{ role: 'user', content: frame.payload.message }],
          stream: true,
        })
        let content = ''
        for await (const part of stream) {
          if (part.message.content) {
            content += part.message.content
            ws.send(JSON.stringify({ type: 'content', content: part.message.content }))
          }
        }
        ws.send(JSON.stringify({ type: 'response', content }))
      },
    },
  })
  console.log(`READY http://127.0.0.1:${server.port} ${KEY}`)
} else if (kind === 'gantry') {
  const { serveGantryForBench } = await import('./lib/gantry-process.ts')
  await serveGantryForBench(KEY, { LOG_LEVEL: 'warn', OLLAMA_MODEL: 'llama3.2' })
} else {
  console.error('usage: bun bench/chat-servers.ts bare|gantry')
  process.exit(2)
}
