/**
 * bench/tasks: N coding tasks (default 500) with a fast simulated model across 2 Gantry processes on one fresh
 * Postgres database, beside the raw cost of one leased `FOR UPDATE SKIP LOCKED` claim on that same database.
 * Prints POST /tasks latency, enqueue-to-TASK_STARTED latency, tasks/s, and claim latency.
 * Tests are not run (CODE_EXECUTION=off): this measures the queue, the workflow and the event log, not bun test.
 * Needs DATABASE_URL (a Postgres server the bench may create a database on); bounded to ~2 minutes.
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres bun bench/tasks.bench.ts [tasks, default 500]
 */
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import postgres from 'postgres'
import { openStore } from '../src/core/db.ts'
import { claimJobs, insertJob } from '../src/core/jobs.ts'
import { createLogger } from '../src/core/logger.ts'
import { startMockOllama } from '../test/fakes/ollama.ts'
import { spawnGantry } from '../test/gantry-process.ts'

const ROOT = resolve(import.meta.dir, '..')
const TASKS = Number(process.argv[2] ?? 500)
const INSTANCES = 2
const CONCURRENCY_PER_INSTANCE = 16
const POST_CONCURRENCY = 16
const DEADLINE_MS = 100_000
const CLAIMS = 2000
const ADMIN_KEY = 'gk_00000000_bench-admin-key-not-secret'
const base = process.env.DATABASE_URL

if (!base) {
  console.log('bench/tasks needs DATABASE_URL (two instances share one Postgres); skipped.')
  process.exit(0)
}

const pct = (sorted: number[], p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : Number.NaN
const sortNum = (xs: number[]) => [...xs].sort((a, b) => a - b)

// A fresh database of its own, dropped at the end.
const dbName = `gantry_bench_${Date.now().toString(36)}`
const admin = postgres(base, { max: 1, onnotice: () => {} })
await admin.unsafe(`create database ${dbName}`)
const dbUrl = new URL(base)
dbUrl.pathname = `/${dbName}`
const url = dbUrl.toString()

const mock = await startMockOllama()
const plan = JSON.stringify({
  modules: [{ name: 'mathutil', purpose: 'add numbers', interface: 'add(a, b)' }],
  estimated_iterations: 1,
})
const code = JSON.stringify({
  code: 'export const add = (a: number, b: number) => a + b',
  tests:
    "import { expect, test } from 'bun:test'\nimport { add } from './mathutil.ts'\ntest('add', () => expect(add(1, 2)).toBe(3))",
})
mock.script(({ body }) => ({
  content: String(body?.messages?.[0]?.content ?? '').startsWith('You plan') ? plan : code,
}))

const pluginsDir = mkdtempSync(join(tmpdir(), 'gantry-bench-plugins-'))
symlinkSync(join(ROOT, 'plugins', 'tasks'), join(pluginsDir, 'tasks'))
const procs: { url: string; proc: ReturnType<typeof Bun.spawn>; dataDir: string }[] = []

async function startInstance() {
  const dataDir = mkdtempSync(join(tmpdir(), 'gantry-bench-'))
  const g = spawnGantry({
    DATA_DIR: dataDir,
    DATABASE_URL: url,
    ADMIN_API_KEY: ADMIN_KEY,
    OLLAMA_HOST: mock.url,
    PLUGINS_DIR: pluginsDir,
    CODE_EXECUTION: 'off',
    TASK_CONCURRENCY: String(CONCURRENCY_PER_INSTANCE),
  })
  const base = await g.url()
  procs.push({ url: base, proc: g.proc, dataDir })
  return base
}

let exitCode = 0
try {
  // Start one first so that migrations run once; the second finds them applied.
  const urls = [await startInstance()]
  for (let i = 1; i < INSTANCES; i++) urls.push(await startInstance())
  const sql = postgres(url, { max: 2, onnotice: () => {} })

  // 1. POST /tasks, POST_CONCURRENCY at a time, alternating instances.
  const postLatencies: number[] = []
  let next = 0
  let postErrors = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: POST_CONCURRENCY }, async () => {
      for (let i = next++; i < TASKS; i = next++) {
        const started = performance.now()
        const res = await fetch(`${urls[i % urls.length]}/tasks`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: `Bench task ${i}: add two numbers` }),
        })
        await res.arrayBuffer()
        postLatencies.push(performance.now() - started)
        if (res.status !== 201) postErrors++
      }
    }),
  )
  const postSeconds = (performance.now() - t0) / 1000

  // 2. Wait for every task to finish (bounded).
  const until = Date.now() + DEADLINE_MS
  let done = 0
  while (Date.now() < until) {
    const [row] =
      await sql`select count(*)::int as n from tasks where status in ('completed', 'failed', 'cancelled')`
    done = row!.n
    if (done >= TASKS) break
    await Bun.sleep(200)
  }
  const [span] = await sql`
    select extract(epoch from (max(finished_at) - min(created_at))) as seconds,
           count(*) filter (where status = 'completed')::int as completed,
           count(*) filter (where status = 'failed')::int as failed
      from tasks`
  const startLatencies = sortNum(
    (
      await sql`
        select extract(epoch from (e.created_at - t.created_at)) * 1000 as ms
          from tasks t join events e on e.stream = t.id and e.type = 'TASK_STARTED'`
    ).map((r) => Number(r.ms)),
  )

  // 3. The raw claim: one job per claim, sequentially, on the same database (no HTTP, no workflow).
  const { log } = createLogger('silent')
  const store = await openStore({ databaseUrl: url, pgliteDir: '', connectTimeoutMs: 5000, log })
  const [owner] = await sql`select id from users limit 1`
  for (let i = 0; i < CLAIMS; i += 500)
    await Promise.all(
      Array.from({ length: Math.min(500, CLAIMS - i) }, (_, j) =>
        insertJob(store.db, {
          id: `bench-claim-${i + j}`,
          kind: 'bench-claim',
          ownerId: owner!.id,
          payload: {},
        }),
      ),
    )
  const claimLatencies: number[] = []
  let claimTime = 0
  for (let i = 0; i < CLAIMS; i++) {
    const started = performance.now()
    const claimed = await claimJobs(store, 'bench-claim', 1, 'bench', 30_000)
    claimLatencies.push(performance.now() - started)
    claimTime += performance.now() - started
    if (claimed.length !== 1) throw new Error('claim found nothing')
    // Untimed: finish it, as a runner would, so running jobs do not pile up in the claim's index.
    await store.query(`update jobs set status = 'succeeded', lease_owner = null where id = $1`, [
      claimed[0]!.id,
    ])
  }
  const claimSeconds = claimTime / 1000
  await store.close()
  await sql.end()

  const post = sortNum(postLatencies)
  const claims = sortNum(claimLatencies)
  const seconds = Number(span!.seconds)
  console.log(
    `${TASKS} tasks, ${INSTANCES} instances × TASK_CONCURRENCY ${CONCURRENCY_PER_INSTANCE}, simulated model (unpaced), CODE_EXECUTION=off, ${POST_CONCURRENCY} concurrent POSTs`,
  )
  const rows = [
    ['measure', 'p50 ms', 'p99 ms', 'per second', 'n'],
    [
      'POST /tasks',
      pct(post, 50).toFixed(2),
      pct(post, 99).toFixed(2),
      (TASKS / postSeconds).toFixed(0),
      String(post.length),
    ],
    [
      'enqueue → TASK_STARTED',
      pct(startLatencies, 50).toFixed(1),
      pct(startLatencies, 99).toFixed(1),
      '-',
      String(startLatencies.length),
    ],
    ['task end to end (tasks/s)', '-', '-', (span!.completed / seconds).toFixed(1), String(span!.completed)],
    [
      'one SKIP LOCKED claim (raw)',
      pct(claims, 50).toFixed(3),
      pct(claims, 99).toFixed(3),
      (CLAIMS / claimSeconds).toFixed(0),
      String(CLAIMS),
    ],
  ]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join('  '))
  console.log(
    `\ncompleted ${span!.completed}, failed ${span!.failed}, POST errors ${postErrors}; ${done}/${TASKS} finished within ${DEADLINE_MS / 1000} s`,
  )
  console.log(
    `POST /tasks p99 is ${(pct(post, 99) / pct(claims, 50)).toFixed(1)}× one raw claim (p50); enqueue → start p50 includes the queue wait while ${INSTANCES * CONCURRENCY_PER_INSTANCE} slots are busy`,
  )
  if (done < TASKS || postErrors) exitCode = 1
} catch (err) {
  console.error(err)
  exitCode = 1
} finally {
  for (const p of procs) p.proc.kill('SIGTERM')
  await Promise.all(procs.map((p) => p.proc.exited))
  for (const p of procs) rmSync(p.dataDir, { recursive: true, force: true })
  rmSync(pluginsDir, { recursive: true, force: true })
  await mock.stop()
  await admin.unsafe(`drop database if exists ${dbName} with (force)`)
  await admin.end()
}
process.exit(exitCode)
