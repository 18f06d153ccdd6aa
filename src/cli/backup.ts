/**
 * `npm run db:backup -- [file]` and `npm run db:restore -- <file> [--force]`: the embedded database (PGlite in
 * DATA_DIR/pg) to one tar.gz and back.
 * - Backup while a server runs: that server holds the database (one process only), so the snapshot comes from
 *   it over HTTP (`GET /api/admin/backup`, an admin key); with no server running, straight from the folder.
 * - Restore: into the DATA_DIR of a stopped server. A database already there is moved aside only with --force.
 * With Postgres (DATABASE_URL) these say to use pg_dump / pg_restore, which do it better.
 */
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { PGlite } from '@electric-sql/pglite'
import { type Config, ConfigError, loadConfig } from '../config.ts'
import { lockPgliteDir, openStore, pgliteOwner } from '../core/db.ts'
import { createLogger } from '../core/logger.ts'

const usage = `Usage:
  npm run db:backup -- [file] [--force]      (default file: gantry-backup-<time>.tar.gz)
  npm run db:restore -- <file> [--force]     (--force moves an existing database aside)
While a server runs, the backup comes from it: GANTRY_URL (default http://127.0.0.1:$PORT) and an admin key
from GANTRY_KEY, ADMIN_API_KEY or DATA_DIR/admin-api-key.`

const POSTGRES = `This server uses Postgres (DATABASE_URL). Use its own tools:
  pg_dump -Fc "$DATABASE_URL" -f gantry.dump
  pg_restore --clean --if-exists --no-owner -d "$DATABASE_URL" gantry.dump`

/** A refusal the user can fix: its message, and exit code 2. */
class UsageProblem extends Error {}

const stamp = () => new Date().toISOString().replace(/[:.]/g, '-')
const megabytes = (bytes: number) => `${(bytes / 1_048_576).toFixed(1)} MB`

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: { force: { type: 'boolean' } },
  })
  const [command, given] = positionals
  // npm runs scripts from the project folder; a file named on the command line is the user's, from where they are.
  const file = given && resolve(process.env.INIT_CWD || process.cwd(), given)
  if (command !== 'backup' && command !== 'restore') throw new UsageProblem(usage)
  const config = loadConfig()
  if (config.databaseUrl) throw new UsageProblem(POSTGRES)
  const dir = resolve(config.dataDir, 'pg')
  if (command === 'backup')
    await backup(config, dir, file ?? `gantry-backup-${stamp()}.tar.gz`, !!values.force)
  else {
    if (!file) throw new UsageProblem(`restore needs the backup file.\n${usage}`)
    await restore(dir, file, !!values.force)
  }
  return 0
}

async function backup(config: Config, dir: string, file: string, force: boolean): Promise<void> {
  if (existsSync(file) && !force)
    throw new UsageProblem(`${file} exists; choose another name or add --force.`)
  const owner = pgliteOwner(dir)
  let archive: Blob
  let source: string
  if (owner !== undefined) {
    archive = await fromServer(config, owner)
    source = `from the running server (pid ${owner})`
  } else {
    if (!existsSync(join(dir, 'PG_VERSION'))) throw new Error(`There is no embedded database in ${dir}.`)
    const { log } = createLogger('warn')
    const store = await openStore({ pgliteDir: dir, connectTimeoutMs: 10_000, log })
    try {
      archive = await store.snapshot!()
    } finally {
      await store.close()
    }
    source = 'from the folder (no server running)'
  }
  // Written whole, then renamed: an interrupted backup never looks like a good one.
  const partial = `${file}.partial`
  writeFileSync(partial, new Uint8Array(await archive.arrayBuffer()), { mode: 0o600 })
  renameSync(partial, file)
  console.log(`Backed up ${dir} ${source} to ${file} (${megabytes(archive.size)}).`)
}

/** The snapshot from the server that holds the database, over its admin route. */
async function fromServer(config: Config, pid: number): Promise<Blob> {
  const host = !config.host || config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host
  const base =
    process.env.GANTRY_URL || `http://${host.includes(':') ? `[${host}]` : host}:${config.port || 9876}`
  const keyFile = join(config.dataDir, 'admin-api-key')
  const key =
    process.env.GANTRY_KEY ||
    config.adminApiKey ||
    (existsSync(keyFile) ? readFileSync(keyFile, 'utf8').trim() : undefined)
  if (!key)
    throw new UsageProblem(
      `A server (pid ${pid}) holds ${config.dataDir}; the backup must come from it, which needs an admin key: set GANTRY_KEY.`,
    )
  let res: Response
  try {
    res = await fetch(`${base.replace(/\/+$/, '')}/api/admin/backup`, {
      headers: { authorization: `Bearer ${key}` },
    })
  } catch (err) {
    throw new UsageProblem(
      `A server (pid ${pid}) holds the database, but ${base} does not answer (${(err as Error).message}): set GANTRY_URL to its address.`,
    )
  }
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { message?: string }
    throw new Error(`${base} refused the backup (${res.status}): ${body.message ?? res.statusText}`)
  }
  return res.blob()
}

async function restore(dir: string, file: string, force: boolean): Promise<void> {
  if (!existsSync(file) || !statSync(file).isFile()) throw new UsageProblem(`No backup file ${file}.`)
  const owner = pgliteOwner(dir)
  if (owner !== undefined) throw new UsageProblem(`A server (pid ${owner}) is using ${dir}: stop it first.`)
  let aside: string | undefined
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    if (!force)
      throw new UsageProblem(
        `${dir} already holds a database. Add --force to move it aside and restore over it.`,
      )
    aside = `${dir}.before-restore-${stamp()}`
    renameSync(dir, aside)
  }
  const unlock = lockPgliteDir(dir)
  try {
    const pg = await PGlite.create({ dataDir: dir, loadDataDir: new Blob([readFileSync(file)]) })
    const count = async (table: string) => {
      const rows = await pg
        .query<{ n: number }>(`select count(*)::int as n from ${table}`)
        .catch(() => undefined)
      return rows?.rows[0]?.n ?? 0
    }
    const [tasks, sessions, events] = [
      await count('tasks'),
      await count('chat_sessions'),
      await count('events'),
    ]
    await pg.close()
    console.log(
      `Restored ${file} into ${dir}: ${tasks} tasks, ${sessions} chat sessions, ${events} events.${aside ? ` The database that was there is in ${aside}.` : ''}`,
    )
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    if (aside) renameSync(aside, dir)
    throw new Error(
      `${file} could not be restored (${(err as Error).message}); ${dirname(dir)} is as it was.`,
    )
  } finally {
    unlock()
  }
}

try {
  process.exit(await main())
} catch (err) {
  const message = err instanceof ConfigError || err instanceof Error ? err.message : String(err)
  console.error(message)
  process.exit(err instanceof UsageProblem ? 2 : 1)
}
