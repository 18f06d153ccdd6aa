/**
 * `npm run keys -- create --user alice [--role admin|user] [--name laptop]`, `list`, `revoke <id|prefix>`.
 * Works on the database the server would use (DATABASE_URL, or the embedded one while the server is stopped).
 */

import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ConfigError, loadConfig } from '../config.ts'
import { migrateAll, openStore } from '../core/db.ts'
import { createApiKey, findOrCreateUser, listApiKeys, revokeApiKey } from '../core/keys.ts'
import { createLogger } from '../core/logger.ts'

const usage = `Usage:
  npm run keys -- create --user <name> [--role user|admin] [--name <label>]
  npm run keys -- list
  npm run keys -- revoke <key id or prefix>`

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: { user: { type: 'string' }, role: { type: 'string' }, name: { type: 'string' } },
  })
  const [command, arg] = positionals
  if (!command || !['create', 'list', 'revoke'].includes(command)) {
    console.error(usage)
    return 2
  }
  if (command === 'create' && (!values.user || (values.role && !['user', 'admin'].includes(values.role)))) {
    console.error(`create needs --user <name>, and --role is user or admin.\n${usage}`)
    return 2
  }
  if (command === 'revoke' && !arg) {
    console.error(`revoke needs a key id or prefix.\n${usage}`)
    return 2
  }
  const config = loadConfig()
  const { log } = createLogger('warn')
  const store = await openStore({
    databaseUrl: config.databaseUrl,
    pgliteDir: join(config.dataDir, 'pg'),
    connectTimeoutMs: Math.min(config.dbConnectTimeoutMs, 10_000),
    log,
  })
  try {
    await migrateAll(store, config.databaseUrl, [])
    if (command === 'create') {
      const wanted = values.role as 'user' | 'admin' | undefined
      const user = await findOrCreateUser(store.db, values.user!, wanted ?? 'user')
      if (!user.created && wanted && wanted !== user.role) {
        // create adds keys; it never changes who someone is.
        console.error(`User "${values.user}" already exists as ${user.role}; no key was created.`)
        return 2
      }
      const key = await createApiKey(store.db, user.id, values.name ?? `${values.user}'s key`)
      const who = user.created
        ? `Created ${user.role} "${values.user}" with key ${key.id}.`
        : `Added key ${key.id} for the existing ${user.role} "${values.user}".`
      console.log(`${who} The key, shown only now:\n${key.key}`)
    } else if (command === 'list') {
      const keys = await listApiKeys(store.db)
      for (const k of keys)
        console.log(
          [
            k.id,
            k.prefix,
            k.user,
            k.role,
            k.name,
            k.revokedAt ? `revoked ${k.revokedAt.toISOString()}` : 'active',
          ].join('\t'),
        )
      if (!keys.length) console.log('No keys yet.')
    } else {
      if (!(await revokeApiKey(store.db, arg!))) {
        console.error(`No active key with id or prefix "${arg}".`)
        return 1
      }
      console.log(`Revoked ${arg}. Servers forget it within 2 s.`)
    }
    return 0
  } finally {
    await store.close()
  }
}

try {
  process.exit(await main())
} catch (err) {
  console.error(`keys: ${err instanceof ConfigError ? err.message : (err as Error).message}`)
  process.exit(1)
}
