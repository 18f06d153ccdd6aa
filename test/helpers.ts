import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Writable } from 'node:stream'
import postgres from 'postgres'
import { loadConfig } from '../src/config.ts'
import { type RunningGantry, startGantry } from '../src/server.ts'

export { freeLoopbackPort, processAlive } from '../src/core/runtime.ts'

/** A Postgres server to test against (CI sets DATABASE_URL); unset means the embedded PGlite. */
export const PG_BASE_URL = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL || undefined
export const ROOT = resolve(import.meta.dir, '..')
export const ADMIN_KEY = 'gk_00000000_test-admin-key-not-secret'

/** Temporary folders made through tempDir(); the preload removes them after the whole run, whatever a test did. */
const tempDirs: string[] = []
export function removeTempDirs(): void {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true })
}
export const tempDir = (prefix = 'gantry-test-') => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  tempDirs.push(dir)
  return dir
}

/** A database of the test's own: a fresh one on the Postgres server, dropped after; or PGlite in memory. */
export async function freshDatabase(): Promise<{ url?: string; pgliteDir: string; drop(): Promise<void> }> {
  if (!PG_BASE_URL) return { pgliteDir: 'memory://', drop: async () => {} }
  const name = `gantry_t_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`
  const admin = postgres(PG_BASE_URL, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  await admin.end()
  const url = new URL(PG_BASE_URL)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    pgliteDir: 'memory://',
    async drop() {
      const sql = postgres(PG_BASE_URL!, { max: 1, onnotice: () => {} })
      await sql.unsafe(`drop database if exists ${name} with (force)`).catch(() => {})
      await sql.end()
    },
  }
}

/** Collects the JSON log lines a server writes. */
export function captureLog() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean))
      done()
    },
  })
  return {
    stream,
    raw: () => lines.join('\n'),
    records: () => lines.map((l) => JSON.parse(l) as Record<string, any>),
  }
}

export interface TestServer {
  url: string
  running: RunningGantry
  log: ReturnType<typeof captureLog>
  dataDir: string
  databaseUrl?: string
  /** JSON request with the admin key unless `key: null`; returns status, parsed body and headers. */
  api<T = any>(
    path: string,
    init?: RequestInit & { key?: string | null; json?: unknown },
  ): Promise<ApiResult<T>>
  stop(): Promise<void>
}

export interface ApiResult<T> {
  status: number
  body: T
  headers: Headers
}

/** Starts a real server on a free loopback port with its own database, data dir and log. */
export async function startTestServer(
  env: Record<string, string> = {},
  opts: {
    database?: { url?: string; pgliteDir: string; drop(): Promise<void> }
    keepDatabase?: boolean
  } = {},
): Promise<TestServer> {
  const database = opts.database ?? (await freshDatabase())
  const dataDir = tempDir()
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    ADMIN_API_KEY: ADMIN_KEY,
    LOG_LEVEL: 'info',
    OLLAMA_HOST: 'http://127.0.0.1:9',
    SHUTDOWN_TIMEOUT_MS: '5000',
    ...(database.url ? { DATABASE_URL: database.url } : {}),
    ...env,
  })
  const log = captureLog()
  const running = await startGantry(config, { logDestination: log.stream, pgliteDir: database.pgliteDir })
  const url = `http://127.0.0.1:${running.server.port}`
  return {
    url,
    running,
    log,
    dataDir,
    databaseUrl: database.url,
    async api(path, init = {}) {
      const { key = ADMIN_KEY, json, ...rest } = init
      const headers = new Headers(rest.headers)
      if (key) headers.set('authorization', `Bearer ${key}`)
      if (json !== undefined) headers.set('content-type', 'application/json')
      const res = await fetch(url + path, {
        ...rest,
        headers,
        body: json !== undefined ? JSON.stringify(json) : rest.body,
      })
      const text = await res.text()
      let body: any = text
      try {
        body = JSON.parse(text)
      } catch {
        // not JSON: keep the text
      }
      return { status: res.status, body, headers: res.headers }
    },
    async stop() {
      await running.stop()
      if (!opts.keepDatabase) await database.drop()
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

/** Creates a non-admin user through the admin API and returns its key. */
export async function createUserKey(server: TestServer, user = 'alice', role: 'user' | 'admin' = 'user') {
  const res = await server.api('/api/keys', { method: 'POST', json: { user, role } })
  if (res.status !== 201) throw new Error(`could not create user: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body as { id: string; key: string; user_id: string }
}

/** The Authorization header for a key (the admin's by default). */
export const bearer = (key = ADMIN_KEY) => ({ authorization: `Bearer ${key}` })

/**
 * The live-delivery tests' world on a server: the admin's user id, a second user (`bob`), and `newStream()`,
 * which creates a task or session stream owned by whoever is named (ids carry `name`, unique per call).
 */
export async function streamWorld(server: TestServer, name: string) {
  const adminId = (await server.api('/api/me')).body.user_id as string
  const bob = await createUserKey(server, `${name}-bob`)
  let n = 0
  return {
    adminId,
    bob,
    async newStream(owner = adminId, kind: 'task' | 'session' = 'task'): Promise<string> {
      const id = `${kind === 'task' ? 'task' : 'sess'}-${name}${++n}`
      await server.running.gantry.events.createStream(id, owner, kind)
      return id
    },
  }
}
export type StreamWorld = Awaited<ReturnType<typeof streamWorld>>

/** Polls until `check` returns a truthy value or the time runs out. */
type Falsy = undefined | null | false | 0 | ''
export async function waitFor<T>(
  check: () => T | Falsy | Promise<T | Falsy>,
  timeoutMs = 5000,
  what = 'condition',
): Promise<T> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value) return value as T
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await Bun.sleep(20)
  }
}

/**
 * Resolves with the first item of a growing list (frames, SSE messages) that matches, waking on each
 * `waiters` call; rejects after `timeoutMs` naming what arrived. The test clients' `next()`.
 */
export function nextMatching<T>(
  items: T[],
  waiters: Set<() => void>,
  match: (item: T) => boolean,
  timeoutMs: number,
  what: string,
  from = 0,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const found = items.slice(from).find(match)
      if (found !== undefined) {
        waiters.delete(check)
        clearTimeout(timer)
        resolve(found)
      }
    }
    const timer = setTimeout(() => {
      waiters.delete(check)
      reject(
        new Error(`no matching ${what} within ${timeoutMs} ms; got ${JSON.stringify(items).slice(-500)}`),
      )
    }, timeoutMs)
    waiters.add(check)
    check()
  })
}
