/**
 * The fan-out bench's Deno column: one stream, 1,000 WebSocket subscribers; Gantry on Deno beside a bare
 * Deno.serve broadcaster, and Gantry on Bun beside a bare Bun.serve publish, in the same run. Each publisher runs
 * in its own process (bench/fanout-deno-servers.ts) and the subscribers in another (bench/lib/ws-clients.ts, on
 * Bun for all four alike). Latency is from the publish (append) call to each receipt on the shared clock; CPU is
 * the publisher process's user + system time over the publishing, per delivered frame. Deno comes from
 * bin/deno.mjs (installed on first use). Gantry runs on PGlite in memory on both runtimes, as in bench/http-deno
 * (bench/fanout runs Bun on Postgres when DATABASE_URL is set).
 *   bun bench/fanout-deno.bench.ts [rounds, default 1]
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { linesOf } from './lib/lines.ts'
import { cpuMicros } from './lib/server-process.ts'

const SUBSCRIBERS = 1000
const MESSAGES = 100
const INTERVAL_MS = 20
const rounds = Number(process.argv[2] ?? 1)

const root = join(import.meta.dirname, '..')
const found = spawnSync('node', [join(root, 'bin', 'deno.mjs'), '--print-path'], { encoding: 'utf8' })
const deno = found.status === 0 ? found.stdout.trim() : ''
if (!deno) {
  console.log('fanout-deno: skipped, Deno is not available (node bin/deno.mjs --print-path failed)')
  process.exit(0)
}

const script = join(import.meta.dirname, 'fanout-deno-servers.ts')
const commands = {
  'bare Bun.serve': [process.execPath, script, 'bare'],
  'gantry on Bun': [process.execPath, script, 'gantry'],
  'bare Deno.serve': [deno, 'run', '-A', '--no-lock', '--node-modules-dir=manual', script, 'bare'],
  'gantry on Deno': [deno, 'run', '-A', '--no-lock', '--node-modules-dir=manual', script, 'gantry'],
}
type Side = keyof typeof commands

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

/** Starts one publisher, opens the subscribers on it, publishes, and measures each receipt. */
async function measure(side: Side) {
  const server = Bun.spawn(commands[side], {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'inherit',
    env: { ...process.env, DATABASE_URL: '' },
  })
  const serverLines = linesOf(server.stdout)
  const ready = (await serverLines.next()).value ?? ''
  const m = /^READY (\S+) (\S+)$/.exec(ready)
  if (!m) throw new Error(`${side} did not start: ${ready}`)
  const clients = Bun.spawn(
    [
      process.execPath,
      join(import.meta.dirname, 'lib', 'ws-clients.ts'),
      m[1]!,
      String(SUBSCRIBERS),
      String(MESSAGES),
      String(MESSAGES * INTERVAL_MS + 10_000),
    ],
    {
      env: { ...process.env, GANTRY_BENCH_HEADERS: JSON.stringify({ authorization: `Bearer ${m[2]}` }) },
      stdout: 'pipe',
      stderr: 'inherit',
    },
  )
  const clientLines = linesOf(clients.stdout)
  const open = await clientLines.next()
  if (open.value !== 'OPEN') throw new Error(`the clients did not open on ${side}: ${open.value}`)
  const cpuBefore = await cpuMicros(server.pid)
  server.stdin.write(`GO ${MESSAGES} ${INTERVAL_MS}\n`)
  server.stdin.flush()
  const sentLine = (await serverLines.next()).value ?? ''
  const report = await clientLines.next()
  const cpuAfter = await cpuMicros(server.pid)
  await clients.exited
  server.kill('SIGTERM')
  await server.exited
  const sent = JSON.parse(sentLine.replace(/^SENT /, '')) as number[]
  const received = (JSON.parse(report.value as string) as { received: number[][] }).received
  const latencies = received.flatMap((r, i) => r.map((t) => t - sent[i]!)).sort((a, b) => a - b)
  return {
    delivered: latencies.length,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    cpuPerDelivery:
      cpuBefore === undefined || cpuAfter === undefined
        ? Number.NaN
        : (cpuAfter - cpuBefore) / latencies.length,
  }
}

const sides = Object.keys(commands) as Side[]
const results = new Map<Side, Awaited<ReturnType<typeof measure>>[]>()
for (let round = 0; round < rounds; round++)
  for (const side of sides) results.set(side, [...(results.get(side) ?? []), await measure(side)])

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const figure = (side: Side, key: 'p50' | 'p99' | 'cpuPerDelivery' | 'delivered') =>
  median(results.get(side)!.map((r) => r[key]))
const fmt = (n: number) => n.toFixed(2)
console.log(
  `fan-out: ${SUBSCRIBERS} subscribers × ${MESSAGES} events, one every ${INTERVAL_MS} ms; ` +
    `gantry on PGlite; median of ${rounds} round(s)`,
)
console.table(
  Object.fromEntries(
    sides.map((side) => [
      side,
      {
        delivered: figure(side, 'delivered'),
        'p50 ms': fmt(figure(side, 'p50')),
        'p99 ms': fmt(figure(side, 'p99')),
        'CPU µs/delivery': fmt(figure(side, 'cpuPerDelivery')),
      },
    ]),
  ),
)
const ratio = (a: Side, b: Side, key: 'p99' | 'cpuPerDelivery') =>
  (figure(a, key) / figure(b, key)).toFixed(2)
console.log(
  `p99: gantry on Deno ${ratio('gantry on Deno', 'bare Deno.serve', 'p99')}× bare Deno.serve; ` +
    `gantry on Bun ${ratio('gantry on Bun', 'bare Bun.serve', 'p99')}× bare Bun.serve; ` +
    `gantry Deno/Bun ${ratio('gantry on Deno', 'gantry on Bun', 'p99')}×`,
)
console.log(
  `CPU per delivery: gantry on Deno ${ratio('gantry on Deno', 'bare Deno.serve', 'cpuPerDelivery')}× bare Deno.serve; ` +
    `gantry on Bun ${ratio('gantry on Bun', 'bare Bun.serve', 'cpuPerDelivery')}× bare Bun.serve; ` +
    `gantry Deno/Bun ${ratio('gantry on Deno', 'gantry on Bun', 'cpuPerDelivery')}×`,
)
process.exit(0)
