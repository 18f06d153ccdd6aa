/**
 * Builds the console's client with Vite when its build is missing or older than its sources, so that
 * `npm start` and `npm test` on a fresh clone serve it without a manual step. Run directly
 * (`bun plugins/console/build.ts`, the `build:console` script) it builds once and exits non-zero on failure.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import type { Logger } from '../../src/core/logger.ts'
import { packageDir } from '../../src/core/runtime.ts'
import { bunExecutable } from '../tasks/runtime.ts'

export const CONSOLE_DIR = import.meta.dirname
export const DIST_DIR = join(CONSOLE_DIR, 'dist')
const STAMP = '.source-stamp'

function filesUnder(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name)
      return statSync(path).isDirectory() ? filesUnder(path) : [path]
    })
}

/** A hash of everything the build reads: the client's sources, the Vite config and the bundled packages' versions. */
export function sourceStamp(): string {
  const hash = createHash('sha256')
  for (const file of [...filesUnder(join(CONSOLE_DIR, 'client')), join(CONSOLE_DIR, 'vite.config.ts')]) {
    hash.update(relative(CONSOLE_DIR, file))
    hash.update(readFileSync(file))
  }
  for (const pkg of [
    'vite',
    'preact',
    '@preact/signals',
    'marked',
    'dompurify',
    'highlight.js',
    '@novnc/novnc',
  ])
    hash.update(`${pkg}@${JSON.parse(readFileSync(join(packageDir(pkg), 'package.json'), 'utf8')).version}`)
  return hash.digest('hex')
}

/** True when dist/ holds a build of the current sources. */
export function isFresh(dist = DIST_DIR): boolean {
  const stamp = join(dist, STAMP)
  return (
    existsSync(join(dist, 'index.html')) && existsSync(stamp) && readFileSync(stamp, 'utf8') === sourceStamp()
  )
}

let running: Promise<void> | undefined

/**
 * Runs `vite build` in a child process into a temporary folder, then swaps it in, so a server serving the old
 * build (or another process building at the same time) never sees half a build. One build per process at a time.
 */
export function buildConsole(log?: Logger): Promise<void> {
  running ??= (async () => {
    const stamp = sourceStamp()
    const tmp = `${DIST_DIR}.tmp-${process.pid}`
    const started = Date.now()
    log?.info({ plugin: 'console' }, 'building the console (vite build)')
    // Vite runs under the bun dependency whichever runtime serves (Deno would need its own permission flags).
    const child = spawn(
      bunExecutable(),
      [
        join(packageDir('vite'), 'bin', 'vite.js'),
        'build',
        '--config',
        join(CONSOLE_DIR, 'vite.config.ts'),
        '--outDir',
        tmp,
      ],
      { cwd: CONSOLE_DIR, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BUN_BE_BUN: '1' } },
    )
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (part: string) => {
      out += part
    })
    child.stderr.setEncoding('utf8').on('data', (part: string) => {
      err += part
    })
    // 'close' comes after the exit and after both pipes have ended.
    const code = await new Promise<number>((resolve) => {
      child.once('error', (e) => {
        err += e.message
        resolve(127)
      })
      child.once('close', (c) => resolve(c ?? 1))
    })
    if (code !== 0) {
      rmSync(tmp, { recursive: true, force: true })
      throw new Error(`vite build of the console failed (exit ${code}): ${(err || out).trim().slice(-2000)}`)
    }
    writeFileSync(join(tmp, STAMP), stamp)
    const old = `${DIST_DIR}.old-${process.pid}`
    if (existsSync(DIST_DIR)) renameSync(DIST_DIR, old)
    renameSync(tmp, DIST_DIR)
    rmSync(old, { recursive: true, force: true })
    log?.info({ plugin: 'console', ms: Date.now() - started }, 'console built')
  })().finally(() => {
    running = undefined
  })
  return running
}

/** Builds only when needed; resolves at once when the build is current. */
export async function ensureBuilt(log?: Logger): Promise<void> {
  if (!isFresh()) await buildConsole(log)
}

export const isBuilding = () => running !== undefined

if (import.meta.main) {
  ensureBuilt()
    .then(() => console.log(`console build is current: ${relative(process.cwd(), DIST_DIR)}`))
    .catch((err) => {
      console.error(err.message)
      process.exit(1)
    })
}
