import { join } from 'node:path'
import type { DestinationStream } from 'pino'
import { createApp } from './app.ts'
import type { Config } from './config.ts'
import type { Gantry } from './core/context.ts'
import { migrateAll, openStore } from './core/db.ts'
import { createEventLog } from './core/events.ts'
import { bootstrapAdmin } from './core/keys.ts'
import { loadPlugins } from './core/loader.ts'
import { createLogger } from './core/logger.ts'
import { listen, type ServerHandle } from './core/runtime.ts'
import { ToolRegistry } from './core/tools.ts'
import { VERSION } from './version.ts'

type Hook = { fn: (app: any) => unknown }

export interface RunningGantry {
  gantry: Gantry
  app: ReturnType<typeof createApp>
  server: ServerHandle
  /** `http://127.0.0.1:<port>` when bound to all interfaces; for tests and the banner. */
  url: string
  /** The admin key generated at this start, if one was (first start without ADMIN_API_KEY). */
  generatedAdminKey?: string
  adminKeyFile?: string
  /** Graceful stop: stop accepting, plugins' onStop in reverse order, close live connections with 1001, close the database. */
  stop(): Promise<{ clean: boolean }>
}

export interface StartOptions {
  /** Log destination instead of stdout (tests). */
  logDestination?: DestinationStream
  /** PGlite location when DATABASE_URL is unset; defaults to DATA_DIR/pg (`memory://` in tests). */
  pgliteDir?: string
}

const withTimeout = <T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> =>
  Promise.race([promise, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref?.())])

/**
 * Boots one Gantry: database (with bounded retries), plugins, migrations under an advisory lock, the admin
 * bootstrap, then listens and runs the plugins' onStart hooks in dependency order.
 */
export async function startGantry(config: Config, opts: StartOptions = {}): Promise<RunningGantry> {
  const { log, hub, logRequest, flush } = createLogger(config.logLevel, opts.logDestination)
  const startedAt = Date.now()
  // Plugins first: a broken one should stop the start before the database is even opened.
  const plugins = await loadPlugins(config.pluginsDir, config.pluginsDisabled, log)
  const store = await openStore({
    databaseUrl: config.databaseUrl,
    pgliteDir: opts.pgliteDir ?? join(config.dataDir, 'pg'),
    connectTimeoutMs: config.dbConnectTimeoutMs,
    log,
  })
  try {
    const admin = (await migrateAll(store, config.databaseUrl, plugins.migrations, () =>
      bootstrapAdmin(store.db, { adminApiKey: config.adminApiKey, dataDir: config.dataDir }),
    ))!
    const events = createEventLog(store, log)
    const gantry: Gantry = {
      config,
      log,
      logHub: hub,
      logRequest,
      store,
      db: store.db,
      events,
      plugins: plugins.statuses,
      connections: new Set(),
      tools: new ToolRegistry(),
      state: new Map(),
      version: VERSION,
      startedAt: new Date(),
      stopping: false,
    }
    const app = createApp(gantry, plugins.loaded)
    await events.start()
    // Elysia fires start/stop hooks without awaiting them; Gantry awaits them, in order, itself.
    const startHooks = [...((app.event.start ?? []) as Hook[])]
    const stopHooks = [...((app.event.stop ?? []) as Hook[])]
    app.event.start = []
    app.event.stop = []
    // Plugins start before the port opens, so the first request already finds every plugin ready.
    let server: ServerHandle
    try {
      for (const hook of startHooks) await hook.fn(app)
      server = listen(app, {
        port: config.port,
        hostname: config.host,
        // Far beyond any body: the HTTP layer refuses oversized ones itself (by Content-Length, or cut off while
        // streaming), in JSON; Bun's own refusal is plain text. Bun discards an unread body, it never buffers it.
        maxRequestBodySize: 2 ** 40,
      })
    } catch (err) {
      // Undo what did start (a taken port, a plugin whose onStart threw), then let the caller report it.
      for (const hook of [...stopHooks].reverse()) await Promise.resolve(hook.fn(app)).catch(() => {})
      await events.close().catch(() => {})
      throw err
    }
    gantry.state.set('core:server', server)
    const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${server.port}`
    log.info(
      {
        port: server.port,
        host: config.host,
        database: store.kind,
        plugins: plugins.loaded.map((p) => p.name),
        ms: Date.now() - startedAt,
      },
      'gantry ready',
    )

    let stopping: Promise<{ clean: boolean }> | undefined
    const stop = () =>
      (stopping ??= (async () => {
        gantry.stopping = true
        log.info('shutting down')
        const stopAccepting = server.stop(false).catch(() => {})
        const graceful = (async () => {
          for (const hook of stopHooks.reverse()) {
            try {
              await hook.fn(app)
            } catch (err) {
              log.error({ err }, 'a plugin failed to stop cleanly')
            }
          }
          for (const close of gantry.connections) close(1001, 'server shutting down')
          gantry.connections.clear()
          // A drain: requests in flight (a long completion, say) finish within SHUTDOWN_TIMEOUT_MS, or a proxy
          // answers their clients 502 for a POST it may not retry elsewhere.
          await stopAccepting
        })()
        const result = await withTimeout(graceful, config.shutdownTimeoutMs)
        const clean = result !== 'timeout'
        if (!clean) log.warn({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown timed out; closing anyway')
        await server.stop(true).catch(() => {})
        // After the plugins' onStop: their last events are committed before the database goes.
        await withTimeout(
          events.close().catch((err) => log.warn({ err }, 'event log did not close cleanly')),
          5000,
        )
        await withTimeout(
          store.close().catch(() => {}),
          5000,
        )
        log.info({ clean }, 'stopped')
        flush()
        return { clean }
      })())

    return {
      gantry,
      app,
      server,
      url,
      generatedAdminKey: admin.generatedKey,
      adminKeyFile: admin.keyFile,
      stop,
    }
  } catch (err) {
    await store.close().catch(() => {})
    flush()
    throw err
  }
}
