import { Elysia } from 'elysia'
import { auth } from '../../src/core/auth.ts'
import { gantryContext } from '../../src/core/context.ts'
import { Conflict, ErrorBody } from '../../src/core/errors.ts'
import type { PluginMeta } from '../../src/core/loader.ts'

export const meta: PluginMeta = {
  description: 'Backups of the embedded database, taken from the running server (npm run db:backup)',
  entryPoints: { backup: '/api/admin/backup' },
}

/**
 * `GET /api/admin/backup`: the running server holds the embedded database (one process only), so a backup
 * taken while it runs must come from it. PGlite runs one query at a time, so the snapshot is consistent: every
 * committed transaction before it, none after. With Postgres, pg_dump is the tool.
 */
export default new Elysia({ name: 'backup', tags: ['Admin'] })
  .use(gantryContext)
  .use(auth)
  .get(
    '/api/admin/backup',
    async ({ gantry }) => {
      const snapshot = gantry.store.snapshot
      if (!snapshot)
        throw Conflict(
          'This server uses Postgres (DATABASE_URL): back it up with `pg_dump -Fc` and restore with `pg_restore`.',
          { database: 'postgres' },
        )
      const started = performance.now()
      const archive = await snapshot()
      gantry.log.info(
        { bytes: archive.size, ms: Math.round(performance.now() - started) },
        'database backup taken',
      )
      const stamp = new Date().toISOString().replace(/[:.]/g, '-')
      return new Response(archive, {
        headers: {
          'content-type': 'application/gzip',
          'content-disposition': `attachment; filename="gantry-backup-${stamp}.tar.gz"`,
          'cache-control': 'no-store',
        },
      })
    },
    {
      auth: 'admin',
      response: { 401: ErrorBody, 403: ErrorBody, 409: ErrorBody },
      detail: {
        summary: 'Back up the embedded database',
        description:
          'A consistent snapshot of the embedded (PGlite) database folder as a tar.gz, while the server runs; restore it with `npm run db:restore -- <file>` on a stopped server. Admins only. 409 when the server uses Postgres (use pg_dump).',
      },
    },
  )
