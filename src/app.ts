import { Elysia } from 'elysia'
import { authRoutes, keyRoutes } from './core/auth.ts'
import type { Gantry } from './core/context.ts'
import { httpLayer, noteRawBodyRoutes } from './core/http.ts'
import type { LoadedPlugin } from './core/loader.ts'
import { metricsRoutes } from './core/metrics-route.ts'
import { coreRoutes } from './core/routes.ts'

/**
 * Builds the app for one Gantry: the global HTTP layer, the core routes, then each loaded plugin in
 * dependency order. Building never listens: tests call `app.handle(request)` on it directly.
 */
export function createApp(gantry: Gantry, plugins: LoadedPlugin[]) {
  // normalize: false makes closed bodies (additionalProperties: false) refuse unknown fields instead of dropping them.
  const app = new Elysia({ name: 'gantry', normalize: false })
    .decorate('gantry', gantry)
    .use(httpLayer)
    .use(coreRoutes(gantry.version))
    .use(authRoutes)
    .use(keyRoutes)
    .use(metricsRoutes)
  for (const plugin of plugins) app.use(plugin.instance)
  noteRawBodyRoutes(gantry, app.routes)
  return app
}

export type CoreApp = ReturnType<typeof createApp>
