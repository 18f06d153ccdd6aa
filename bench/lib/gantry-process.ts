/**
 * Runs the full Gantry app inside a bench's server process: every plugin, the production log path (JSON lines
 * on stdout, drained by the bench), PGlite in memory unless DATABASE_URL is set. Prints `READY <url> <key>`.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../../src/config.ts'
import { startGantry } from '../../src/server.ts'

/** The full app in this process on a data folder of its own, with the bench's admin key; no banner. */
export async function startGantryForBench(key: string, env: Record<string, string> = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'gantry-bench-'))
  const config = loadConfig({
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_API_KEY: key,
    DATA_DIR: dataDir,
    ...env,
  })
  const running = await startGantry(config, { pgliteDir: config.databaseUrl ? undefined : 'memory://' })
  return { running, dataDir }
}

export async function serveGantryForBench(key: string, env: Record<string, string> = {}): Promise<void> {
  const { running, dataDir } = await startGantryForBench(key, env)
  process.stdout.write(`READY http://127.0.0.1:${running.server.port} ${key}\n`)
  process.on('SIGTERM', async () => {
    await running.stop()
    rmSync(dataDir, { recursive: true, force: true })
    process.exit(0)
  })
}
