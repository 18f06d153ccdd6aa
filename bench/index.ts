/**
 * `npm run bench`: runs every `bench/*.bench.ts` in turn (each also runs alone: `bun bench/http.bench.ts`).
 * `npm run bench -- http` runs only those whose name contains "http".
 */
import { readdirSync } from 'node:fs'
import { join } from 'node:path'

const filter = process.argv[2]
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
