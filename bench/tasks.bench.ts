/**
 * bench/tasks: `POST /tasks` latency while tasks run, beside the same POST on an idle server in the same run.
 *
 * A Gantry process (the tasks plugin, TASK_CONCURRENCY 32), the simulated Ollama pacing every reply at
 * 50 tokens/s, 16 concurrent posters posting for the same time in each phase:
 * 1. idle: 32 "hold" tasks fill the slots with a model call that streams nothing and never ends, so the
 *    runner is full but does no work; the posters' tasks only queue. That is the baseline.
 * 2. busy, model: the hold tasks are cancelled and 32 of the queued tasks run (plan, two modules, every reply
 *    at 50 tokens/s) with CODE_EXECUTION=off, so all 32 are talking to the model all the time: the issue's
 *    "32 tasks against a model paced at 50 tokens/s".
 * 3. busy, model + sandbox: a second server with CODE_EXECUTION=sandbox (unsandboxed without bubblewrap),
 *    so the tasks' tests and type checks run too, in their run slots at the bottom of the CPU. Its tasks
 *    then mostly wait for a slot, and on a machine that others keep busy the runs get little CPU at all: the
 *    sandbox-runs count says what they got done. On Postgres when DATABASE_URL is set, else PGlite.
 * Prints p50/p99 of each phase and the ratio to the idle phase, the server's CPU time per post (from /proc:
 * its own threads, PGlite included, not the runs; in the busy phases it includes the tasks' own work), how
 * many tasks were running, and what the running tasks got done meanwhile (model replies, sandbox runs).
 * Embedded PGlite always; Postgres too when DATABASE_URL is set (a fresh database, dropped after). Bounded:
 * about 15 s per server.
 *   [DATABASE_URL=postgres://…] bun bench/tasks.bench.ts [seconds per phase, default 4] [pglite|postgres]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { tasksOnlyPluginsDir } from '../plugins/tasks/testing.ts'
import { startMockOllama } from '../test/fakes/ollama.ts'
import { spawnGantry } from '../test/gantry-process.ts'
import { removeTempDirs } from '../test/helpers.ts'
import { cpuMicros } from './lib/server-process.ts'

const PHASE_SECONDS = Number(process.argv[2] ?? 4)
const only = process.argv[3]
const RUNNING = 32
const POSTERS = 16
const TOKENS_PER_SECOND = 50
const ADMIN_KEY = 'gk_00000000_bench-admin-key-not-secret'
const SANDBOX = Bun.which('bwrap') ? 'sandbox' : 'unsandboxed'
const base = process.env.DATABASE_URL

const pct = (sorted: number[], p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : Number.NaN
const sortNum = (xs: number[]) => [...xs].sort((a, b) => a - b)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// The model: a plan of two modules, then each module's code and tests (about 60–120 tokens a reply, so a
// reply takes 1–2.5 s at 50 tokens/s); the hold tasks' plan call streams nothing and hangs.
const plan = JSON.stringify({
  modules: [
    {
      name: 'mathutil',
      purpose: 'add two numbers, exactly, for the statistics module',
      interface: 'add(a, b)',
    },
    { name: 'stats', purpose: 'sum a list of numbers with add from mathutil', interface: 'sum(xs)' },
  ],
  estimated_iterations: 2,
})
const modules: Record<string, { code: string; tests: string }> = {
  mathutil: {
    code: '/** Adds two numbers. */\nexport const add = (a: number, b: number): number => a + b\n',
    tests: [
      "import { expect, test } from 'bun:test'",
      "import { add } from './mathutil.ts'",
      "test('adds', () => expect(add(2, 3)).toBe(5))",
      "test('adds negatives', () => expect(add(-1, 1)).toBe(0))",
      "test('adds zero', () => expect(add(0, 7)).toBe(7))",
    ].join('\n'),
  },
  stats: {
    code: "import { add } from './mathutil.ts'\n/** The sum of the numbers. */\nexport const sum = (xs: number[]): number => xs.reduce(add, 0)\n",
    tests: [
      "import { expect, test } from 'bun:test'",
      "import { sum } from './stats.ts'",
      "test('sums', () => expect(sum([1, 2, 3])).toBe(6))",
      "test('empty', () => expect(sum([])).toBe(0))",
    ].join('\n'),
  },
}

const mock = await startMockOllama({ tokensPerSecond: TOKENS_PER_SECOND })
mock.script(({ body }) => {
  const system = String(body?.messages?.[0]?.content ?? '')
  const text = (body?.messages ?? []).map((m: { content?: string }) => m.content ?? '').join('\n')
  if (text.includes('Hold the slot')) return { content: '', hang: true }
  if (system.startsWith('You plan')) return { content: plan }
  const name = /Write the module (\w+)\.ts/.exec(text)?.[1] ?? 'mathutil'
  return { content: JSON.stringify(modules[name] ?? modules.mathutil) }
})
const modelCalls = () => mock.requests.filter((r) => r.path === '/api/chat').length
const pluginsDir = tasksOnlyPluginsDir()

type Kind = 'pglite' | 'postgres'

/** One server: the idle phase (when `withIdle`), then the busy one with the tasks running under `execution`. */
async function benchOne(kind: Kind, execution: 'off' | 'sandbox' | 'unsandboxed', withIdle: boolean) {
  const dataDir = mkdtempSync(join(tmpdir(), 'gantry-bench-tasks-'))
  let dropDatabase = async () => {}
  let databaseUrl: string | undefined
  if (kind === 'postgres') {
    const name = `gantry_bench_${Date.now().toString(36)}`
    const admin = postgres(base!, { max: 1, onnotice: () => {} })
    await admin.unsafe(`create database ${name}`)
    await admin.end()
    const u = new URL(base!)
    u.pathname = `/${name}`
    databaseUrl = u.toString()
    dropDatabase = async () => {
      const sql = postgres(base!, { max: 1, onnotice: () => {} })
      await sql.unsafe(`drop database if exists ${name} with (force)`)
      await sql.end()
    }
  }
  const g = spawnGantry({
    DATA_DIR: dataDir,
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ADMIN_API_KEY: ADMIN_KEY,
    OLLAMA_HOST: mock.url,
    OLLAMA_MODEL: 'llama3.2',
    PLUGINS_DIR: pluginsDir,
    CODE_EXECUTION: execution,
    TASK_CONCURRENCY: String(RUNNING),
    // e.g. BENCH_BUN_OPTIONS='--cpu-prof-md --cpu-prof-dir=/tmp/prof' profiles the server
    ...(process.env.BENCH_BUN_OPTIONS ? { BUN_OPTIONS: process.env.BENCH_BUN_OPTIONS } : {}),
  })
  try {
    const url = await g.url()
    const headers = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }
    const post = async (prompt: string) => {
      const res = await fetch(`${url}/tasks`, { method: 'POST', headers, body: JSON.stringify({ prompt }) })
      const body = (await res.json()) as { task_id: string }
      if (res.status !== 201) throw new Error(`POST /tasks answered ${res.status}: ${JSON.stringify(body)}`)
      return body.task_id
    }
    const running = async () => {
      const res = await fetch(`${url}/tasks?status=running&limit=100`, { headers })
      return ((await res.json()) as { tasks: unknown[] }).tasks.length
    }
    const sandboxRuns = async () => {
      const text = await (await fetch(`${url}/metrics`, { headers })).text()
      let n = 0
      for (const m of text.matchAll(/^gantry_sandbox_runs_total\{[^}]*\} (\d+)/gm)) n += Number(m[1])
      return n
    }
    /** POSTERS concurrent posters for `seconds`: each latency in ms, and the server's CPU µs per post. */
    const postPhase = async (label: string, seconds = PHASE_SECONDS) => {
      const latencies: number[] = []
      const until = performance.now() + seconds * 1000
      let next = 0
      const cpu0 = await cpuMicros(g.pid)
      await Promise.all(
        Array.from({ length: POSTERS }, async () => {
          while (performance.now() < until) {
            const started = performance.now()
            await post(`Bench ${label} task ${next++}: build a statistics library`)
            latencies.push(performance.now() - started)
          }
        }),
      )
      const cpu1 = await cpuMicros(g.pid)
      const cpuPerPost =
        cpu0 === undefined || cpu1 === undefined ? Number.NaN : (cpu1 - cpu0) / latencies.length
      return { latencies: sortNum(latencies), cpuPerPost }
    }
    const waitUntil = async (what: string, ok: () => Promise<boolean>, timeoutMs = 60_000) => {
      const until = Date.now() + timeoutMs
      while (!(await ok())) {
        if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
        await sleep(100)
      }
    }

    let idle: Awaited<ReturnType<typeof postPhase>> | undefined
    if (withIdle) {
      // 1. Idle: the slots are held by tasks that wait on the model forever, so the posted tasks queue.
      const holds = await Promise.all(Array.from({ length: RUNNING }, (_, i) => post(`Hold the slot ${i}`)))
      await waitUntil('the hold tasks to start', async () => mock.activeGenerations >= RUNNING)
      await postPhase('warm-up', 1) // the first requests compile the route; not counted
      idle = await postPhase('idle')
      // 2. Busy: free the slots; 32 of the queued tasks start.
      for (const id of holds) await fetch(`${url}/tasks/${id}/cancel`, { method: 'POST', headers })
    } else {
      await postPhase('warm-up', 1) // queues enough tasks for the runner, and compiles the route
    }
    await waitUntil('32 tasks running', async () => (await running()) >= RUNNING)
    await sleep(2000) // into the steady state: model replies streaming, test runs in the sandbox
    const samples: number[] = []
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        samples.push(await running())
        await sleep(500)
      }
    })()
    const callsBefore = modelCalls()
    const runsBefore = await sandboxRuns()
    const t0 = performance.now()
    const busy = await postPhase('busy')
    const seconds = (performance.now() - t0) / 1000
    const calls = modelCalls() - callsBefore
    const runs = (await sandboxRuns()) - runsBefore
    sampling = false
    await sampler
    return { idle, busy, samples, seconds, calls, runs }
  } finally {
    g.proc.kill('SIGTERM')
    await g.exit()
    if (process.env.BENCH_SERVER_STDERR) console.error(g.stderr())
    rmSync(dataDir, { recursive: true, force: true })
    await dropDatabase()
  }
}

let exitCode = 0
const kinds = (['pglite', 'postgres'] as const).filter(
  (k) => (!only || only === k) && (k === 'pglite' || base),
)
console.log(
  `POST /tasks, ${POSTERS} concurrent posters, ${PHASE_SECONDS} s per phase; ${RUNNING} tasks running (TASK_CONCURRENCY ${RUNNING}), model paced at ${TOKENS_PER_SECOND} tokens/s`,
)
if (!base) console.log('(DATABASE_URL unset: embedded PGlite only)')
const rows = [
  ['database', 'phase', 'posts', 'p50 ms', 'p99 ms', 'max ms', 'p99 × idle', 'server CPU ms/post', 'running'],
]
type Phase = Awaited<ReturnType<typeof benchOne>>['busy']
const row = (kind: Kind, phase: string, r: Phase, idle: Phase, running: string) => [
  kind,
  phase,
  String(r.latencies.length),
  pct(r.latencies, 50).toFixed(1),
  pct(r.latencies, 99).toFixed(1),
  r.latencies.at(-1)!.toFixed(1),
  (pct(r.latencies, 99) / pct(idle.latencies, 99)).toFixed(2),
  (r.cpuPerPost / 1000).toFixed(2),
  running,
]
try {
  for (const kind of kinds) {
    const withSandbox = kind === kinds.at(-1)
    const model = await benchOne(kind, 'off', true)
    const idle = model.idle!
    const work = (r: typeof model) => {
      const mean = r.samples.reduce((a, b) => a + b, 0) / Math.max(1, r.samples.length)
      return `${Math.min(...r.samples)}–${mean.toFixed(1)}`
    }
    rows.push(row(kind, 'idle', idle, idle, '0'), row(kind, 'busy: model', model.busy, idle, work(model)))
    const said = (label: string, r: typeof model) =>
      console.log(
        `${kind}, ${label}: during the busy phase (${r.seconds.toFixed(1)} s) the running tasks made ${r.calls} model calls (${(r.calls / r.seconds).toFixed(1)}/s) and ${r.runs} sandbox runs`,
      )
    said('model', model)
    if (withSandbox) {
      const sandboxed = await benchOne(kind, SANDBOX, false)
      rows.push(row(kind, `busy: model + ${SANDBOX}`, sandboxed.busy, idle, work(sandboxed)))
      said(`model + ${SANDBOX}`, sandboxed)
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  '))
} catch (err) {
  console.error(err)
  exitCode = 1
} finally {
  await mock.stop()
  removeTempDirs()
}
process.exit(exitCode)
