/**
 * bench/deep-json: what hostile JSON costs (issue 12, item 3). Against `bun src/index.ts` in its own process:
 * the time to answer one deep body (100,000 levels, ~200 KB, to the public POST /api/auth/login), and /health's
 * latency while five such bodies arrive at once, beside /health on an idle server.
 *   bun bench/deep-json.bench.ts [rounds, default 5]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnGantry } from '../test/gantry-process.ts'

const rounds = Number(process.argv[2] ?? 5)
const DEPTH = 100_000
const bodies = {
  'arrays in a field': `{"api_key": ${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}}`,
  'objects in a field': `{"api_key": ${'{"a":'.repeat(DEPTH / 2)}1${'}'.repeat(DEPTH / 2)}}`,
  'arrays beside a valid field': `{"api_key": "x", "z": ${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}}`,
}

const dataDir = mkdtempSync(join(tmpdir(), 'gantry-deep-json-'))
const gantry = spawnGantry({ DATA_DIR: dataDir, OLLAMA_HOST: 'http://127.0.0.1:9' })
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const max = (xs: number[]) => Math.max(...xs)
const ms = (x: number) => `${x.toFixed(1)} ms`

try {
  const url = await gantry.url()
  const timed = async (path: string, init?: RequestInit) => {
    const t0 = performance.now()
    const res = await fetch(url + path, init)
    await res.arrayBuffer()
    return { ms: performance.now() - t0, status: res.status }
  }
  const deep = (body: string) =>
    timed('/api/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  /** /health polled back to back until `until` settles; every latency seen. */
  const healthDuring = async (until: Promise<unknown>) => {
    const seen: number[] = []
    let done = false
    until.finally(() => {
      done = true
    })
    while (!done) seen.push((await timed('/health')).ms)
    return seen
  }

  for (let i = 0; i < 20; i++) await timed('/health') // warm up
  const idle: number[] = []
  for (let i = 0; i < 50; i++) idle.push((await timed('/health')).ms)
  console.log(`/health, idle: median ${ms(median(idle))}, max ${ms(max(idle))}`)

  for (const [name, body] of Object.entries(bodies)) {
    const one: number[] = []
    const statuses = new Set<number>()
    const during: number[] = []
    for (let r = 0; r < rounds; r++) {
      const single = await deep(body)
      one.push(single.ms)
      statuses.add(single.status)
      const five = Promise.all(Array.from({ length: 5 }, () => deep(body)))
      during.push(...(await healthDuring(five)))
      for (const answer of await five) statuses.add(answer.status)
    }
    console.log(
      `${name} (${(body.length / 1024).toFixed(0)} KB): answered ${[...statuses].join('/')} in median ${ms(median(one))}` +
        ` (max ${ms(max(one))}); /health while five arrive at once: median ${ms(median(during))}, max ${ms(max(during))} (${during.length} probes)`,
    )
  }
} finally {
  gantry.proc.kill('SIGTERM')
  await gantry.exit()
  rmSync(dataDir, { recursive: true, force: true })
}
