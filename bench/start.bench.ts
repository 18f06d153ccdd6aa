/**
 * bench/start: time from spawning the process to the first 200 from /health, with an existing database
 * (DESIGN.md goal: ≤ 1 s), beside a bare Bun.serve process started the same way.
 *   bun bench/start.bench.ts [runs, default 5]       (DATABASE_URL set: Postgres; unset: PGlite on disk)
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freshDatabase } from '../test/helpers.ts'

const runs = Number(process.argv[2] ?? 5)
const root = join(import.meta.dir, '..')
const dataDir = mkdtempSync(join(tmpdir(), 'gantry-start-'))
const port = 20000 + Math.floor(Math.random() * 20000)

async function timeToHealthy(cmd: string[], env: Record<string, string>, url: string): Promise<number> {
  const t0 = performance.now()
  const proc = Bun.spawn(cmd, {
    cwd: root,
    env: { ...process.env, ...env },
    stdout: 'ignore',
    stderr: 'ignore',
  })
  try {
    for (;;) {
      try {
        if ((await fetch(url)).ok) return performance.now() - t0
      } catch {
        // not listening yet
      }
      if (proc.exitCode !== null) throw new Error(`${cmd.join(' ')} exited with ${proc.exitCode}`)
      await Bun.sleep(5)
    }
  } finally {
    proc.kill('SIGTERM')
    await proc.exited
  }
}

const bareScript = `Bun.serve({ port: ${port}, hostname: '127.0.0.1', routes: { '/health': () => Response.json({ status: 'ok' }) } })`
const database = await freshDatabase()
const gantryEnv: Record<string, string> = {
  ...(database.url ? { DATABASE_URL: database.url } : {}),
  PORT: String(port),
  HOST: '127.0.0.1',
  DATA_DIR: dataDir,
  LOG_LEVEL: 'warn',
  ADMIN_API_KEY: 'gk_00000000_bench-start-key',
}
const url = `http://127.0.0.1:${port}/health`

// First start creates and migrates the database; it is not what the goal is about.
const first = await timeToHealthy([process.execPath, 'src/index.ts'], gantryEnv, url)
const gantry: number[] = []
const bare: number[] = []
for (let i = 0; i < runs; i++) {
  gantry.push(await timeToHealthy([process.execPath, 'src/index.ts'], gantryEnv, url))
  bare.push(await timeToHealthy([process.execPath, '-e', bareScript], {}, url))
}
rmSync(dataDir, { recursive: true, force: true })
await database.drop()
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
console.log(
  `database: ${process.env.DATABASE_URL ? 'Postgres (DATABASE_URL)' : 'PGlite on disk'}; ${runs} runs; medians`,
)
console.log(`first start (creates the database): ${first.toFixed(0)} ms`)
console.log(`gantry, existing database:          ${median(gantry).toFixed(0)} ms (all plugins)`)
console.log(`bare Bun.serve process:             ${median(bare).toFixed(0)} ms`)
console.log(`gantry − bare: ${(median(gantry) - median(bare)).toFixed(0)} ms; goal: ready ≤ 1000 ms`)
