/** `npm run db:migrate`: applies the core's and the plugins' migrations to the configured database, then exits. */
import { join } from 'node:path'
import { ConfigError, loadConfig } from '../config.ts'
import { migrateAll, openStore } from '../core/db.ts'
import { loadPlugins } from '../core/loader.ts'
import { createLogger } from '../core/logger.ts'

try {
  const config = loadConfig()
  const { log } = createLogger('warn')
  const plugins = await loadPlugins(config.pluginsDir, config.pluginsDisabled, log)
  const store = await openStore({
    databaseUrl: config.databaseUrl,
    pgliteDir: join(config.dataDir, 'pg'),
    connectTimeoutMs: config.dbConnectTimeoutMs,
    log,
  })
  try {
    await migrateAll(store, config.databaseUrl, plugins.migrations)
    console.log(
      `Migrations applied (${store.kind}; plugins with their own: ${plugins.migrations.map((m) => m.name).join(', ') || 'none'}).`,
    )
  } finally {
    await store.close()
  }
  process.exit(0)
} catch (err) {
  console.error(`db:migrate: ${err instanceof ConfigError ? err.message : (err as Error).message}`)
  process.exit(1)
}
