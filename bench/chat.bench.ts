/**
 * bench/chat: 100 concurrent chat sessions, each streaming 100 tokens/s from the simulated Ollama to a
 * WebSocket client, through Gantry (WS /ws/chat, chat jobs, the event log) and, in the same run, through a
 * bare Bun.serve relay. For every token: the time from the simulated model writing it to the relay until the
 * client has it; and the relay process's CPU while streaming.
 * Goal (DESIGN.md): Gantry adds ≤ 5 ms p99 over the bare relay, using ≤ 50% of one core.
 *   bun bench/chat.bench.ts [sessions, default 100] [seconds of streaming, default 10]
 * With DATABASE_URL, Gantry uses a fresh database on that server (dropped after); else PGlite in memory.
 */
import { readFileSync } from 'node:fs'
import postgres from 'postgres'
import { startMockOllama, tokensOf } from '../test/fakes/ollama.ts'
import { freshDatabase } from '../test/helpers.ts'
import { startServerProcess } from './lib/server-process.ts'

const SESSIONS = Number(process.argv[2] ?? 100)
const SECONDS = Number(process.argv[3] ?? 10)
const TOKENS_PER_SECOND = 100
const TOKENS = SECONDS * TOKENS_PER_SECOND

const ollama = await startMockOllama()
const answerOf = (i: number, n: number) => Array.from({ length: n }, (_, k) => `s${i}t${k}`).join(' ')
ollama.script(({ body }) => {
  const m = /^stream (\d+) (\d+)/.exec(body.messages?.at(-1)?.content ?? '')
  if (!m) return { content: 'ok' }
  return { content: answerOf(Number(m[1]), Number(m[2])), tokensPerSecond: TOKENS_PER_SECOND }
})

/**
 * The tap: the relays reach the simulated Ollama through it, and it notes when each token leaves for the relay
 * (the model "emitting" it). It runs in this process, so its clock is the clients' clock.
 */
const emittedAt = new Map<string, number>()
const tap = Bun.serve({
  port: 0,
  hostname: '127.0.0.1',
  idleTimeout: 0,
  async fetch(req) {
    const url = new URL(req.url)
    const upstream = await fetch(ollama.url + url.pathname, {
      method: req.method,
      headers: { 'content-type': 'application/json' },
      body: req.method === 'GET' ? undefined : await req.text(),
    })
    if (!upstream.headers.get('content-type')?.includes('ndjson') || !upstream.body) return upstream
    const decoder = new TextDecoder()
    let pending = ''
    const stamp = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        pending += decoder.decode(chunk, { stream: true })
        for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
          const line = pending.slice(0, nl)
          pending = pending.slice(nl + 1)
          const content = (JSON.parse(line) as { message?: { content?: string } }).message?.content
          const now = performance.now()
          if (content) for (const token of tokensOf(content)) emittedAt.set(token.trim(), now)
        }
        controller.enqueue(chunk)
      },
    })
    return new Response(upstream.body.pipeThrough(stamp), { headers: upstream.headers })
  },
})
const tapUrl = `http://127.0.0.1:${tap.port}`

const clockTicks = 100 // USER_HZ on Linux
const cpuSeconds = (pid: number) => {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return (Number(fields[11]) + Number(fields[12])) / clockTicks
  } catch {
    return Number.NaN
  }
}

interface RunResult {
  tokens: number
  expected: number
  latencies: number[]
  cpuPercent: number
  wallSeconds: number
}

async function streamAll(
  base: string,
  key: string,
  kind: 'bare' | 'gantry',
  sessions: number,
  tokens: number,
  pid: number,
  tag: string,
): Promise<RunResult> {
  const latencies: number[] = []
  let received = 0
  const wsBase = base.replace('http', 'ws')
  const clients = await Promise.all(
    Array.from({ length: sessions }, async (_, i) => {
      const ws = new WebSocket(kind === 'gantry' ? `${wsBase}/ws/chat/bench_${tag}_${i}` : wsBase, {
        headers: { authorization: `Bearer ${key}` },
      } as any)
      const connected = new Promise<void>((resolve, reject) => {
        ws.addEventListener('message', function first(e) {
          if (JSON.parse(String(e.data)).type === 'connected') {
            ws.removeEventListener('message', first)
            resolve()
          }
        })
        ws.addEventListener('error', () => reject(new Error(`socket ${i} failed`)))
      })
      await connected
      return ws
    }),
  )
  const cpuBefore = cpuSeconds(pid)
  const started = performance.now()
  await Promise.all(
    clients.map(
      (ws, i) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`session ${i} did not finish`)),
            (SECONDS + 60) * 1000,
          )
          ws.addEventListener('message', (e) => {
            const now = performance.now()
            const frame = JSON.parse(String(e.data))
            if (frame.type === 'content')
              for (const token of tokensOf(frame.content)) {
                const at = emittedAt.get(token.trim())
                if (at !== undefined) {
                  latencies.push(now - at)
                  received++
                }
              }
            else if (frame.type === 'response' || frame.type === 'error') {
              clearTimeout(timer)
              ws.close()
              resolve()
            }
          })
          ws.send(JSON.stringify({ type: 'chat', payload: { message: `stream ${i} ${tokens}` } }))
        }),
    ),
  )
  const wallSeconds = (performance.now() - started) / 1000
  const cpuPercent = ((cpuSeconds(pid) - cpuBefore) / wallSeconds) * 100
  emittedAt.clear()
  return { tokens: received, expected: sessions * tokens, latencies, cpuPercent, wallSeconds }
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN

const database = process.env.DATABASE_URL ? await freshDatabase() : undefined
const results = new Map<string, RunResult>()
// With Postgres, Gantry runs twice: as configured (every event committed durably before delivery), and with
// synchronous_commit off for its database, to show how much of the latency is the WAL flush of each commit.
const runs = [
  { name: 'bare Bun.serve', kind: 'bare' as const },
  { name: 'gantry', kind: 'gantry' as const },
  ...(database
    ? [{ name: 'gantry, synchronous_commit=off', kind: 'gantry' as const, asyncCommit: true }]
    : []),
]
try {
  for (const run of runs) {
    const kind = run.kind
    const env: Record<string, string> = { OLLAMA_HOST: tapUrl }
    if (database?.url) env.DATABASE_URL = database.url
    else delete process.env.DATABASE_URL
    if (database?.url && 'asyncCommit' in run) {
      const admin = postgres(database.url, { max: 1, onnotice: () => {} })
      await admin.unsafe(
        `alter database ${new URL(database.url).pathname.slice(1)} set synchronous_commit = off`,
      )
      await admin.end()
    }
    const server = await startServerProcess('chat-servers.ts', [kind], env)
    const pid = Number(
      (await Bun.$`pgrep -n -f ${`chat-servers.ts ${kind}`}`.nothrow().text()).trim() || Number.NaN,
    )
    try {
      await streamAll(server.url, server.extra!, kind, 10, 50, pid, 'warm') // warm-up
      results.set(
        run.name,
        await streamAll(server.url, server.extra!, kind, SESSIONS, TOKENS, pid, run.name.length.toString(36)),
      )
    } finally {
      await server.stop()
    }
  }
} finally {
  tap.stop(true)
  await ollama.stop()
  await database?.drop()
}

console.log(
  `${SESSIONS} sessions × ${TOKENS_PER_SECOND} tokens/s for ${SECONDS} s; latency = simulated model writes a token → the WebSocket client has it`,
)
const rows: string[][] = [['relay', 'tokens received', 'p50 ms', 'p99 ms', 'max ms', 'CPU % of one core']]
for (const [kind, r] of results) {
  const sorted = [...r.latencies].sort((a, b) => a - b)
  rows.push([
    kind,
    `${r.tokens}/${r.expected}`,
    pct(sorted, 50).toFixed(2),
    pct(sorted, 99).toFixed(2),
    (sorted.at(-1) ?? Number.NaN).toFixed(2),
    r.cpuPercent.toFixed(1),
  ])
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join('  '))
const p99 = (kind: string) =>
  pct(
    [...results.get(kind)!.latencies].sort((a, b) => a - b),
    99,
  )
const added = p99('gantry') - p99('bare Bun.serve')
if (results.has('gantry, synchronous_commit=off'))
  console.log(
    `with synchronous_commit=off: ${(p99('gantry, synchronous_commit=off') - p99('bare Bun.serve')).toFixed(2)} ms added at p99`,
  )
console.log(
  `\nGantry adds ${added.toFixed(2)} ms at p99 over the bare relay (goal ≤ 5) using ${results.get('gantry')!.cpuPercent.toFixed(1)}% of one core (goal ≤ 50); database: ${database ? 'Postgres' : 'PGlite'}`,
)
process.exit(0)
