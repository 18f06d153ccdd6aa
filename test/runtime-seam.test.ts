/**
 * The one runtime seam: Bun's own APIs (`Bun.*`, imports from `bun` and `bun:*`) appear only in src/core/runtime*,
 * so the same server runs on Deno. Tests, test helpers (`testing.ts`) and benchmarks may use Bun freely: they run
 * under `bun test` and `bun bench/…`. Text about `bun:test` inside a string (the task workflow asks the model for
 * bun:test tests, which the sandbox runs with the bun binary) is not a use.
 */
import { describe, expect, test } from 'bun:test'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { ROOT } from './helpers.ts'

const SCANNED = ['src', 'plugins', 'bin']
const SKIPPED_DIRS = new Set(['node_modules', 'dist', 'viewer', 'assets'])
const SOURCE = /\.(ts|tsx|mjs|js)$/

/** Test code and the seam itself, where Bun's APIs belong. */
const allowed = (path: string) =>
  path.endsWith('.test.ts') ||
  path.endsWith('/testing.ts') ||
  path === 'src/core/runtime.ts' ||
  path.startsWith('src/core/runtime/')

function sourcesUnder(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(join(ROOT, path)).isDirectory()) return SKIPPED_DIRS.has(name) ? [] : sourcesUnder(path)
    return SOURCE.test(name) ? [path] : []
  })
}

/** Comments say what Bun does, and may: only code counts. Strings are kept, then their content is ignored. */
function codeOf(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, (comment) => comment.replace(/[^\n]/g, ''))
    .replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1')
    .replace(/(['"`])(?:\\.|(?!\1)[^\\\n])*\1/g, (literal) =>
      /^['"]bun(:[\w-]+)?['"]$/.test(literal) ? literal : '""',
    )
}

const BUN_USE = [
  { what: 'Bun.*', pattern: /(?<![\w.$])Bun\s*\./ },
  { what: "import from 'bun' or 'bun:*'", pattern: /\bfrom\s*['"]bun(:[\w-]+)?['"]/ },
  { what: "import('bun…')/require('bun…')", pattern: /\b(import|require)\s*\(\s*['"]bun(:[\w-]+)?['"]/ },
]

/** Every line of `text` that uses Bun's APIs in code, as `line: what`. */
export function bunUses(text: string): string[] {
  const found: string[] = []
  codeOf(text)
    .split('\n')
    .forEach((line, i) => {
      for (const use of BUN_USE) if (use.pattern.test(line)) found.push(`${i + 1}: ${use.what}`)
    })
  return found
}

describe('the runtime seam', () => {
  test('the detector finds each kind of use, and not comments or prompt text', () => {
    expect(bunUses('const f = Bun.file(path)')).toEqual(['1: Bun.*'])
    expect(bunUses("import type { ServerWebSocket } from 'bun'")).toEqual(["1: import from 'bun' or 'bun:*'"])
    expect(bunUses("import { jsc } from 'bun:jsc'")).toEqual(["1: import from 'bun' or 'bun:*'"])
    expect(bunUses("const m = await import('bun:ffi')")).toEqual(["1: import('bun…')/require('bun…')"])
    expect(bunUses('// Bun.which does not exist on Deno\n/* Bun.spawn */ const x = 1')).toEqual([])
    expect(bunUses('const hint = "tests must import from \'bun:test\'"')).toEqual([])
    expect(bunUses('const url = "http://x" ; Bun.sleep(1)')).toEqual(['1: Bun.*'])
  })

  test('src/, plugins/ and bin/ use Bun only in src/core/runtime*, the tests and test helpers', () => {
    const offenders: string[] = []
    const files = SCANNED.flatMap(sourcesUnder)
    expect(files.length).toBeGreaterThan(100)
    for (const path of files) {
      if (allowed(path)) continue
      for (const use of bunUses(readFileSync(join(ROOT, path), 'utf8')))
        offenders.push(`${relative('.', path)}:${use}`)
    }
    expect(offenders).toEqual([])
  })
})
