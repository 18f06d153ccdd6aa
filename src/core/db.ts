import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite'
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator'
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js'
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator'
import postgres from 'postgres'
import type { Logger } from './logger.ts'

/** The drizzle database every service takes first. Same API over postgres.js and PGlite. */
export type Database = PgDatabase<PgQueryResultHKT>

/**
 * A query built once per database and then only executed, with `sql.placeholder()` values: drizzle skips
 * rebuilding the SQL text, which is a quarter of the CPU of a one-row lookup by id. For the hot reads (a task
 * or a session by id on every poll); `build` runs at first use on each database handle.
 */
export function prepared<Q>(build: (db: Database) => Q): (db: Database) => Q {
  const built = new WeakMap<Database, Q>()
  return (db) => {
    let query = built.get(db)
    if (!query) {
      query = build(db)
      built.set(db, query)
    }
    return query
  }
}

/** A transaction or the database itself: services accept either. */
export type Executor = Database | Parameters<Parameters<Database['transaction']>[0]>[0]

export interface Store {
  kind: 'postgres' | 'pglite'
  db: Database
  /**
   * Raw parameterised SQL, for the few statements drizzle does not express (LISTEN helpers, locks) and the hot
   * ones. `prepare`: Postgres keeps the statement parsed per connection, for constant text run again and again
   * (the event log's commit); the embedded database ignores it.
   */
  query<T = Record<string, unknown>>(
    text: string,
    params?: unknown[],
    options?: { prepare?: boolean },
  ): Promise<T[]>
  /** Subscribes to a NOTIFY channel; `onListen` runs at first and after every reconnect (catch up there). */
  listen(
    channel: string,
    onPayload: (payload: string) => void,
    onListen?: () => void,
  ): Promise<() => Promise<void>>
  notify(channel: string, payload: string): Promise<void>
  /** True when a trivial query answers within `timeoutMs`. */
  ping(timeoutMs?: number): Promise<boolean>
  /**
   * The embedded database only: a consistent snapshot of its whole folder (tar.gz), taken between two
   * queries (PGlite runs one at a time). `npm run db:backup` gets it from a running server this way.
   */
  snapshot?(): Promise<Blob>
  close(): Promise<void>
}

const MIGRATIONS_LOCK = 0x6a_6e_74_72 // 'gntr': one advisory lock for every instance's migrations
export const CORE_MIGRATIONS = resolve(import.meta.dirname, '../../migrations')

/** The database could not be reached (at start, or for one request while running). */
export class DatabaseUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'DatabaseUnavailableError'
  }
}

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'ConnectionRefused',
  'ConnectionClosed',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
])

/** True for errors that mean "the database is not there right now" rather than "this query is wrong". */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e: any = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (e instanceof DatabaseUnavailableError) return true
    if (typeof e.code === 'string' && UNAVAILABLE_CODES.has(e.code)) return true
    if (typeof e.errno === 'string' && UNAVAILABLE_CODES.has(e.errno)) return true
  }
  return false
}

/** The Postgres error code (e.g. 23505) of a failed query, looking through drizzle's wrapper. */
export function pgErrorCode(err: unknown): string | undefined {
  for (let e: any = err, depth = 0; e && depth < 5; e = e.cause, depth++)
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return e.code
  return undefined
}

function describeUrl(url: string): string {
  const u = new URL(url)
  return `${u.hostname}:${u.port || 5432}${u.pathname}`
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Opens Postgres (DATABASE_URL) with bounded retries, or PGlite under `pgliteDir` (`memory://` for tests). */
export async function openStore(opts: {
  databaseUrl?: string
  pgliteDir: string
  connectTimeoutMs: number
  log: Logger
}): Promise<Store> {
  return opts.databaseUrl
    ? openPostgres(opts.databaseUrl, opts.connectTimeoutMs, opts.log)
    : openPglite(opts.pgliteDir)
}

async function openPostgres(url: string, connectTimeoutMs: number, log: Logger): Promise<Store> {
  const sql = postgres(url, {
    max: 10,
    idle_timeout: 60,
    connect_timeout: 5,
    onnotice: () => {},
    connection: { application_name: 'gantry' },
  })
  const started = Date.now()
  for (let attempt = 1, delay = 200; ; attempt++, delay = Math.min(delay * 2, 5000)) {
    try {
      await sql`select 1`
      break
    } catch (err) {
      const elapsed = Date.now() - started
      const reason = (err as Error).message
      if (!isDatabaseUnavailable(err) || elapsed + delay > connectTimeoutMs) {
        await sql.end({ timeout: 1 }).catch(() => {})
        throw new DatabaseUnavailableError(
          `Could not reach Postgres at ${describeUrl(url)} after ${attempt} attempt(s) in ${Math.round(elapsed / 1000)} s: ${reason}. Check DATABASE_URL, or unset it to use the embedded database.`,
          { cause: err },
        )
      }
      log.warn({ attempt, retryInMs: delay, reason }, 'database not reachable yet; retrying')
      await sleep(delay)
    }
  }
  return {
    kind: 'postgres',
    db: drizzlePostgres(sql) as unknown as Database,
    query: (text, params = [], options) =>
      sql.unsafe(text, params as any[], { prepare: options?.prepare === true }) as any,
    async listen(channel, onPayload, onListen) {
      const sub = await sql.listen(channel, onPayload, onListen)
      return () => sub.unlisten()
    },
    async notify(channel, payload) {
      await sql.notify(channel, payload)
    },
    ping: (timeoutMs = 1000) => pingWithTimeout(() => sql`select 1`, timeoutMs),
    close: () => sql.end({ timeout: 5 }),
  }
}

/** The pid of another live process that holds the embedded database in `dir`, if one does. */
export function pgliteOwner(dir: string): number | undefined {
  const lock = `${dir.replace(/\/+$/, '')}.lock`
  if (!existsSync(lock)) return undefined
  const pid = Number(readFileSync(lock, 'utf8').trim())
  try {
    return pid > 0 && pid !== process.pid && process.kill(pid, 0) ? pid : undefined
  } catch {
    return undefined
  }
}

/**
 * PGlite is one process's database: a second process opening the same folder would corrupt it.
 * A pid file beside it makes the second one stop with a clear message instead.
 */
export function lockPgliteDir(dir: string): () => void {
  const lock = `${dir.replace(/\/+$/, '')}.lock`
  const pid = pgliteOwner(dir)
  if (pid !== undefined)
    throw new DatabaseUnavailableError(
      `The embedded database in ${dir} is in use by another Gantry process (pid ${pid}). Stop it first, or use the HTTP API (e.g. /api/keys) of the running server.`,
    )
  writeFileSync(lock, String(process.pid))
  return () => rmSync(lock, { force: true })
}

async function openPglite(dir: string): Promise<Store> {
  const memory = dir.startsWith('memory://')
  if (!memory) mkdirSync(dir, { recursive: true })
  const unlock = memory ? () => {} : lockPgliteDir(dir)
  let pg: PGlite
  try {
    pg = await PGlite.create(dir)
  } catch (err) {
    unlock()
    throw err
  }
  return {
    kind: 'pglite',
    db: drizzlePglite(pg) as unknown as Database,
    query: async (text, params = []) => (await pg.query(text, params)).rows as any,
    async listen(channel, onPayload, onListen) {
      const unsubscribe = await pg.listen(channel, onPayload)
      onListen?.()
      return unsubscribe
    },
    async notify(channel, payload) {
      await pg.query('select pg_notify($1, $2)', [channel, payload])
    },
    ping: (timeoutMs = 1000) => pingWithTimeout(() => pg.query('select 1'), timeoutMs),
    snapshot: () => pg.dumpDataDir('gzip'),
    close: async () => {
      await pg.close()
      unlock()
    },
  }
}

async function pingWithTimeout(run: () => PromiseLike<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([
      Promise.resolve(run()).then(() => true),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), timeoutMs)
      }),
    ])
  } catch {
    return false
  } finally {
    clearTimeout(timer)
  }
}

/** A plugin's own migrations: `plugins/<name>/migrations/meta/_journal.json` marks a drizzle-kit folder. */
export interface MigrationSet {
  name: string
  folder: string
}

export function pluginMigrations(pluginDir: string, name: string): MigrationSet | undefined {
  const folder = join(pluginDir, 'migrations')
  return existsSync(join(folder, 'meta', '_journal.json')) ? { name, folder } : undefined
}

/**
 * Applies the core migrations, then each plugin's, under one advisory lock so that instances
 * starting together never race. Each set keeps its own bookkeeping table in the `drizzle` schema.
 */
export async function migrateAll<T = void>(
  store: Store,
  databaseUrl: string | undefined,
  sets: MigrationSet[],
  /** Runs while the lock is still held: one-time bootstrap that must not race either. */
  thenUnderLock?: () => Promise<T>,
): Promise<T | undefined> {
  const all = [{ name: 'core', folder: CORE_MIGRATIONS }, ...sets].filter(
    (s) =>
      existsSync(join(s.folder, 'meta', '_journal.json')) &&
      readdirSync(s.folder).some((f) => f.endsWith('.sql')),
  )
  const table = (name: string) =>
    name === 'core' ? '__drizzle_migrations' : `__drizzle_migrations_${name.replace(/\W/g, '_')}`
  if (store.kind === 'pglite' || !databaseUrl) {
    for (const set of all)
      await migratePglite(store.db as any, { migrationsFolder: set.folder, migrationsTable: table(set.name) })
    return thenUnderLock?.()
  }
  // Session-level advisory locks belong to one connection: take it, migrate and release on that same one.
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {}, connect_timeout: 5 })
  try {
    await sql`select pg_advisory_lock(${MIGRATIONS_LOCK})`
    const db = drizzlePostgres(sql)
    for (const set of all)
      await migratePostgres(db, { migrationsFolder: set.folder, migrationsTable: table(set.name) })
    const result = await thenUnderLock?.()
    await sql`select pg_advisory_unlock(${MIGRATIONS_LOCK})`
    return result
  } finally {
    await sql.end({ timeout: 5 })
  }
}
