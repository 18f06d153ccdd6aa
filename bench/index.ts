/**
 * `npm run bench`: runs every `bench/*.bench.ts` in turn (each also runs alone: `bun bench/http.bench.ts`).
 * `npm run bench -- http` runs only those whose name contains "http".
 */
import { readdirSync } from 'node:fs'
import { join } from 'node:path'

const filter = process.argv[2]
// Every bench takes Postgres from DATABASE_URL (each makes a fresh database there and drops it); the test
// suite's TEST_DATABASE_URL works as well, so that no bench quietly runs on PGlite while the others use Postgres.
const database = process.env.DATABASE_URL || process.env.TEST_DATABASE_URL
if (database) process.env.DATABASE_URL = database
console.log(
  `database: ${database ? `Postgres at ${new URL(database).host} (a fresh database per bench)` : 'PGlite (set DATABASE_URL for Postgres)'}`,
)
const files = readdirSync(import.meta.dir)
  .filter((f) => f.endsWith('.bench.ts') && (!filter || f.includes(filter)))
  .sort()
let failed = 0
const took: string[] = []
const began = performance.now()
for (const file of files) {
  console.log(`\n### ${file}\n`)
  const started = performance.now()
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, file)], {
    stdout: 'inherit',
    stderr: 'inherit',
  })
  if ((await proc.exited) !== 0) failed++
  took.push(`${file} ${((performance.now() - started) / 1000).toFixed(0)} s`)
}
console.log(`\n${took.join(', ')}; all: ${((performance.now() - began) / 1000).toFixed(0)} s (goal < 300 s)`)
process.exit(failed ? 1 : 0)
