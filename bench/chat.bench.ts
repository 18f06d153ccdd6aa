/**
 * bench/chat: 100 concurrent chat sessions, each streaming 100 tokens/s from the simulated Ollama to a
 * WebSocket client, through Gantry (WS /ws/chat, chat jobs, the event log) and, in the same run, through a
 * bare Bun.serve relay. For every token: the time from the simulated model writing it to the relay until the
 * client first has it; and the relay process's CPU while streaming.
 * Gantry runs twice: with clients that take live tokens before the commit (`?tentative=1`, kept as the
 * protocol says: plugins/sessions/chat-client.ts, and checked against the final answer), and with stock
 * clients, which see each delta once it is committed.
 * Goal (DESIGN.md): Gantry adds ≤ 5 ms p99 and ≤ 1 ms p50 over the bare relay, using ≤ 50% of one core while
 * the sessions stream (CPU is also shown over whole turns, their start and end included).
 *   bun bench/chat.bench.ts [sessions, default 100] [seconds of streaming, default 6]
 * With DATABASE_URL, Gantry uses a fresh database on that server (dropped after); else PGlite in memory.
 */
import { readFileSync } from 'node:fs'
import { ChatFrames } from '../plugins/sessions/chat-client.ts'
import { startMockOllama, tokensOf } from '../test/fakes/ollama.ts'
import { freshDatabase } from '../test/helpers.ts'
import { startServerProcess } from './lib/server-process.ts'

const SESSIONS = Number(process.argv[2] ?? 100)
const SECONDS = Number(process.argv[3] ?? 6)
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
  cpuSeconds: number
  wallSeconds: number
  /**
   * The steady part: from the moment every session has had its first token until the first answer ends, when
   * all of them stream and nothing else happens (no turn starts or ends). The whole turn (above) adds what a
   * chat turn costs besides streaming: the job, the session and message rows, the stored answer.
   */
  streaming: { cpuSeconds: number; wallSeconds: number; tokens: number }
  /** Sessions whose kept text (committed and acknowledged frames) differed from the final answer. */
  wrong: number
  retracted: number
}

async function streamAll(
  base: string,
  key: string,
  kind: 'bare' | 'gantry',
  sessions: number,
  tokens: number,
  pid: number,
  tag: string,
  tentative = false,
): Promise<RunResult> {
  const latencies: number[] = []
  let received = 0
  let wrong = 0
  let retracted = 0
  const wsBase = base.replace('http', 'ws')
  const clients = await Promise.all(
    Array.from({ length: sessions }, async (_, i) => {
      const path = `/ws/chat/bench_${tag}_${i}${tentative ? '?tentative=1' : ''}`
      const ws = new WebSocket(kind === 'gantry' ? `${wsBase}${path}` : wsBase, {
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
  let streamingSessions = 0
  let steadyFrom: { cpu: number; at: number; tokens: number } | undefined
  let steadyTo: { cpu: number; at: number; tokens: number } | undefined
  const mark = () => ({ cpu: cpuSeconds(pid), at: performance.now(), tokens: received })
  await Promise.all(
    clients.map(
      (ws, i) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`session ${i} did not finish`)),
            (SECONDS + 60) * 1000,
          )
          const kept = new ChatFrames()
          let streaming = false
          ws.addEventListener('message', (e) => {
            const now = performance.now()
            const frame = JSON.parse(String(e.data))
            kept.apply(frame)
            if (frame.type === 'content' && !streaming) {
              streaming = true
              if (++streamingSessions === sessions) steadyFrom = mark()
            }
            if (frame.type === 'content')
              for (const token of tokensOf(frame.content)) {
                // A token counts once, when the client first has it (tentative or committed).
                const at = emittedAt.get(token.trim())
                if (at !== undefined) {
                  emittedAt.delete(token.trim())
                  latencies.push(now - at)
                  received++
                }
              }
            else if (frame.type === 'response' || frame.type === 'error') {
              if (steadyFrom && !steadyTo) steadyTo = mark()
              clearTimeout(timer)
              if (kind === 'gantry' && (kept.committedText() !== frame.content || kept.problems.length))
                wrong++
              retracted += kept.counts.retracted
              ws.close()
              resolve()
            }
          })
          ws.send(JSON.stringify({ type: 'chat', payload: { message: `stream ${i} ${tokens}` } }))
        }),
    ),
  )
  const wallSeconds = (performance.now() - started) / 1000
  const cpuUsed = cpuSeconds(pid) - cpuBefore
  const cpuPercent = (cpuUsed / wallSeconds) * 100
  emittedAt.clear()
  return {
    tokens: received,
    expected: sessions * tokens,
    latencies,
    cpuPercent,
    cpuSeconds: cpuUsed,
    wallSeconds,
    wrong,
    retracted,
    streaming:
      steadyFrom && steadyTo
        ? {
            cpuSeconds: steadyTo.cpu - steadyFrom.cpu,
            wallSeconds: (steadyTo.at - steadyFrom.at) / 1000,
            tokens: steadyTo.tokens - steadyFrom.tokens,
          }
        : { cpuSeconds: 0, wallSeconds: 0, tokens: 0 },
  }
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN

const database = process.env.DATABASE_URL ? await freshDatabase() : undefined
const results = new Map<string, RunResult>()
const LIVE = 'gantry, live tokens (?tentative=1)'
const STOCK = 'gantry, stock clients (committed)'
const BARE = 'bare Bun.serve'
/**
 * Both relays run from the start, and the three runs take turns in short rounds (bare, live, stock, bare, …):
 * on a shared machine, whatever else runs meanwhile lands on all three alike. One Gantry process serves both
 * kinds of client, on the same database.
 */
const ROUNDS = 5
const runs = [
  { name: BARE, kind: 'bare' as const, tentative: false },
  { name: LIVE, kind: 'gantry' as const, tentative: true },
  { name: STOCK, kind: 'gantry' as const, tentative: false },
]
const servers: Awaited<ReturnType<typeof startServerProcess>>[] = []
try {
  const env: Record<string, string> = { OLLAMA_HOST: tapUrl }
  if (database?.url) env.DATABASE_URL = database.url
  else delete process.env.DATABASE_URL
  const relays = new Map<string, { url: string; key: string; pid: number }>()
  for (const kind of ['bare', 'gantry'] as const) {
    const server = await startServerProcess('chat-servers.ts', [kind], env)
    servers.push(server)
    const pid = Number(
      (await Bun.$`pgrep -n -f ${`chat-servers.ts ${kind}`}`.nothrow().text()).trim() || Number.NaN,
    )
    relays.set(kind, { url: server.url, key: server.extra!, pid })
    // Warm-up at full load for 2 s: the JIT's first minutes are not what a server running for hours costs.
    await streamAll(
      server.url,
      server.extra!,
      kind,
      SESSIONS,
      2 * TOKENS_PER_SECOND,
      pid,
      'warm',
      kind === 'gantry',
    )
  }
  for (let round = 0; round < ROUNDS; round++)
    for (const [i, run] of runs.entries()) {
      const relay = relays.get(run.kind)!
      const r = await streamAll(
        relay.url,
        relay.key,
        run.kind,
        SESSIONS,
        Math.round(TOKENS / ROUNDS),
        relay.pid,
        `r${round}x${i}`,
        run.tentative,
      )
      const sum = results.get(run.name)
      if (!sum) results.set(run.name, r)
      else {
        sum.tokens += r.tokens
        sum.expected += r.expected
        for (const l of r.latencies) sum.latencies.push(l)
        sum.cpuSeconds += r.cpuSeconds
        sum.wallSeconds += r.wallSeconds
        sum.cpuPercent = (sum.cpuSeconds / sum.wallSeconds) * 100
        sum.wrong += r.wrong
        sum.retracted += r.retracted
        sum.streaming.cpuSeconds += r.streaming.cpuSeconds
        sum.streaming.wallSeconds += r.streaming.wallSeconds
        sum.streaming.tokens += r.streaming.tokens
      }
    }
  for (const server of servers) await server.stop()
  servers.length = 0
} finally {
  for (const server of servers) await server.stop()
  tap.stop(true)
  await ollama.stop()
  await database?.drop()
}

console.log(
  `${SESSIONS} sessions × ${TOKENS_PER_SECOND} tokens/s for ${SECONDS} s each (${ROUNDS} rounds, taking turns); latency = simulated model writes a token → the WebSocket client first has it`,
)
const rows: string[][] = [
  [
    'relay',
    'tokens received',
    'p50 ms',
    'p99 ms',
    'max ms',
    'CPU % of one core',
    'CPU µs/token',
    'streaming: CPU %',
    'µs/token',
    'kept ≠ answer',
  ],
]
const streamingPercent = (r: RunResult) =>
  (r.streaming.cpuSeconds / Math.max(1e-9, r.streaming.wallSeconds)) * 100
const sortedOf = (name: string) => [...results.get(name)!.latencies].sort((a, b) => a - b)
for (const [name, r] of results) {
  const sorted = sortedOf(name)
  rows.push([
    name,
    `${r.tokens}/${r.expected}`,
    pct(sorted, 50).toFixed(2),
    pct(sorted, 99).toFixed(2),
    (sorted.at(-1) ?? Number.NaN).toFixed(2),
    r.cpuPercent.toFixed(1),
    ((r.cpuSeconds * 1e6) / Math.max(1, r.tokens)).toFixed(1),
    streamingPercent(r).toFixed(1),
    ((r.streaming.cpuSeconds * 1e6) / Math.max(1, r.streaming.tokens)).toFixed(1),
    name === BARE ? '-' : `${r.wrong} (${r.retracted} retracted)`,
  ])
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join('  '))
const added = (name: string, p: number) => pct(sortedOf(name), p) - pct(sortedOf(BARE), p)
console.log('')
for (const name of [LIVE, STOCK])
  console.log(
    `${name}: adds ${added(name, 50).toFixed(2)} ms at p50 (goal ≤ 1), ${added(name, 99).toFixed(2)} ms at p99 (goal ≤ 5) over the bare relay, using ${streamingPercent(results.get(name)!).toFixed(1)}% of one core while all sessions stream (goal ≤ 50; ${results.get(name)!.cpuPercent.toFixed(1)}% over whole turns, start and end included)`,
  )
console.log(`database: ${database ? 'Postgres' : 'PGlite'}`)
process.exit(0)
