/**
 * The HTTP bench's Deno column: Gantry on Deno beside a bare Deno.serve, and beside Gantry and a bare Bun.serve
 * on Bun, all four in their own processes in the same run, in short alternating rounds (as bench/http). Prints
 * requests/s per server and route, and the ratios. Deno comes from bin/deno.mjs (installed on first use).
 *   bun bench/http-deno.bench.ts [seconds per round, default 1] [rounds, default 2]
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { runLoad } from './lib/load.ts'
import { startServerProcess } from './lib/server-process.ts'

const seconds = Number(process.argv[2] ?? 1)
const rounds = Number(process.argv[3] ?? 2)
const root = join(import.meta.dirname, '..')
const found = spawnSync('node', [join(root, 'bin', 'deno.mjs'), '--print-path'], { encoding: 'utf8' })
const deno = found.status === 0 ? found.stdout.trim() : ''
if (!deno) {
  console.log('http-deno: skipped, Deno is not available (node bin/deno.mjs --print-path failed)')
  process.exit(0)
}

/** A bench server on Deno, started as startServerProcess does for Bun. */
async function startDeno(kind: string) {
  const proc = Bun.spawn(
    [
      deno,
      'run',
      '-A',
      '--no-lock',
      '--node-modules-dir=manual',
      join(import.meta.dirname, 'http-deno-servers.ts'),
      kind,
    ],
    { stdout: 'pipe', stderr: 'inherit', env: { ...process.env, DATABASE_URL: '' } },
  )
  const reader = proc.stdout.getReader()
  let buffered = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) throw new Error(`${kind} exited before it was ready`)
    buffered += new TextDecoder().decode(value)
    const m = /READY (\S+) (\S+)\n/.exec(buffered)
    if (m) {
      ;(async () => {
        for (;;) if ((await reader.read()).done) break
      })()
      return {
        url: m[1]!,
        key: m[2]!,
        stop: async () => {
          proc.kill('SIGTERM')
          await proc.exited
        },
      }
    }
  }
}

const servers = {
  'bun bare': await startServerProcess('http-servers.ts', ['bare'], { DATABASE_URL: '' }),
  'bun gantry': await startServerProcess('http-servers.ts', ['gantry'], { DATABASE_URL: '' }),
  'deno bare': await startDeno('deno-bare'),
  'deno gantry': await startDeno('deno-gantry'),
}
const names = Object.keys(servers) as (keyof typeof servers)[]
const keyOf = (s: (typeof servers)[keyof typeof servers]) => ('key' in s ? s.key : s.extra)
const routes = [
  { path: '/health', auth: false },
  { path: '/api/me', auth: true },
]
const rps = new Map<string, number[]>()
for (const name of names) await runLoad({ url: `${servers[name].url}/health`, seconds: 1 }) // warm-up
for (let round = 0; round < rounds; round++)
  for (const route of routes)
    for (const name of names) {
      const server = servers[name]
      const headers = route.auth ? { authorization: `Bearer ${keyOf(server)}` } : undefined
      const result = await runLoad({ url: server.url + route.path, headers, seconds })
      const key = `${name} GET ${route.path}`
      rps.set(key, [...(rps.get(key) ?? []), result.errors ? 0 : result.rps])
    }
await Promise.all(names.map((n) => servers[n].stop()))

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
console.log(`server        route          req/s (median of ${rounds} rounds of ${seconds} s)`)
for (const route of routes)
  for (const name of names)
    console.log(
      `${name.padEnd(13)} GET ${route.path.padEnd(10)} ${Math.round(median(rps.get(`${name} GET ${route.path}`)!))}`,
    )
for (const route of routes) {
  const m = (name: string) => median(rps.get(`${name} GET ${route.path}`)!)
  console.log(
    `GET ${route.path}: gantry on Deno ${(m('deno gantry') / m('deno bare')).toFixed(2)}× bare Deno.serve; ` +
      `gantry on Bun ${(m('bun gantry') / m('bun bare')).toFixed(2)}× bare Bun.serve; ` +
      `gantry Deno/Bun ${(m('deno gantry') / m('bun gantry')).toFixed(2)}×`,
  )
}
