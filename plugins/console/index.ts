import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { staticPlugin } from '@elysiajs/static'
import { Elysia } from 'elysia'
import { authenticate, toPrincipalBody } from '../../src/core/auth.ts'
import { gantryContext, gantryOf } from '../../src/core/context.ts'
import { PAGE_PROVIDER } from '../../src/core/routes.ts'
import { DIST_DIR, ensureBuilt, isBuilding } from './build.ts'
import { consolePage } from './page.ts'

// meta.json says `optional`: a console that cannot load leaves the API running with the placeholder page.

// The static plugin lists its folder when it is created; the build may only arrive after start.
mkdirSync(join(DIST_DIR, 'console'), { recursive: true })

// Hashed file names: a new build gets new names, so browsers may keep each file for a year. On Deno, where the
// static plugin sends no content type, the runtime seam adds it from the file name.
const assets = await staticPlugin({
  assets: join(DIST_DIR, 'console'),
  prefix: '/console',
  alwaysStatic: false,
  indexHTML: false,
  headers: { 'Cache-Control': 'public, max-age=31536000, immutable', 'X-Content-Type-Options': 'nosniff' },
  detail: { hide: true },
  silent: true,
})

/**
 * The console plugin: the browsers' page at `GET /` (through the core's page provider, so API clients keep
 * their JSON and disabling the plugin brings back the placeholder) and its hashed assets under `/console/`.
 * The client is built on start when its build is missing or stale; the page says so meanwhile.
 */
export default new Elysia({ name: 'console' })
  .use(gantryContext)
  .use(assets)
  .onStart((app) => {
    const gantry = gantryOf(app)
    const whoIs = (request: Request) =>
      authenticate(gantry, request).then(
        (p) => (p ? toPrincipalBody(p) : null),
        () => null,
      )
    gantry.state.set(PAGE_PROVIDER, consolePage(DIST_DIR, isBuilding, whoIs))
    // Not awaited: the API is up at once; the page says "being built" until the build is in place.
    ensureBuilt(gantry.log).catch((err) =>
      gantry.log.error({ plugin: 'console', err: err.message }, 'the console could not be built'),
    )
  })
  .onStop((app) => {
    gantryOf(app).state.delete(PAGE_PROVIDER)
  })
