import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { and, eq, gt, isNull, sql } from 'drizzle-orm'
import type { Database } from './db.ts'
import { apiKeys, authSessions, users } from './schema.ts'

export type Role = 'admin' | 'user'

/** Who is calling: resolved from an API key or a login session. */
export interface Principal {
  userId: string
  userName: string
  role: Role
  keyId: string | null
  keyName: string | null
  via: 'api_key' | 'session'
}

export const newId = (prefix: string, bytes = 12) => `${prefix}-${randomBytes(bytes).toString('base64url')}`
export const sha256 = (value: string) => createHash('sha256').update(value).digest('hex')

/** Keys look like `gk_<8 hex prefix>_<32 chars>`; the prefix finds the row, the hash proves the key. */
export function generateApiKey(): { key: string; prefix: string; hash: string } {
  const prefix = randomBytes(4).toString('hex')
  const key = `gk_${prefix}_${randomBytes(24).toString('base64url')}`
  return { key, prefix, hash: sha256(key) }
}

/** Keys given through ADMIN_API_KEY may have any shape; their prefix is derived from the hash. */
function prefixOf(key: string): string {
  const m = /^gk_([0-9a-f]{8})_/.exec(key)
  return m ? m[1]! : `x${sha256(key).slice(0, 15)}`
}

function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex')
  const y = Buffer.from(b, 'hex')
  return x.length === y.length && timingSafeEqual(x, y)
}

/** Finds the principal behind an API key, or null for unknown and revoked keys. */
export async function verifyApiKey(db: Database, key: string): Promise<Principal | null> {
  if (key.length < 16 || key.length > 256) return null
  const hash = sha256(key)
  const [row] = await db
    .select({
      keyId: apiKeys.id,
      keyName: apiKeys.name,
      hash: apiKeys.hash,
      userId: users.id,
      userName: users.name,
      role: users.role,
    })
    .from(apiKeys)
    .innerJoin(users, eq(users.id, apiKeys.userId))
    .where(and(eq(apiKeys.prefix, prefixOf(key)), isNull(apiKeys.revokedAt)))
    .limit(1)
  if (!row || !sameHash(row.hash, hash)) return null
  return {
    userId: row.userId,
    userName: row.userName,
    role: row.role,
    keyId: row.keyId,
    keyName: row.keyName,
    via: 'api_key',
  }
}

export async function touchApiKey(db: Database, keyId: string): Promise<void> {
  await db.update(apiKeys).set({ lastUsedAt: new Date() }).where(eq(apiKeys.id, keyId))
}

export async function createUser(db: Database, name: string, role: Role = 'user'): Promise<{ id: string }> {
  const id = newId('usr', 9)
  await db.insert(users).values({ id, name, role })
  return { id }
}

/**
 * The user called `name`, created with `role` only when there is none yet: a second key for alice belongs to
 * the alice who owns the tasks and sessions, not to a new user of the same name. The advisory lock keeps two
 * concurrent calls from both creating her.
 */
export async function findOrCreateUser(
  db: Database,
  name: string,
  role: Role = 'user',
): Promise<{ id: string; role: Role; created: boolean }> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`gantry.users:${name}`}))`)
    const [existing] = await tx
      .select({ id: users.id, role: users.role })
      .from(users)
      .where(eq(users.name, name))
      .orderBy(users.createdAt)
      .limit(1)
    if (existing) return { ...existing, created: false }
    const id = newId('usr', 9)
    await tx.insert(users).values({ id, name, role })
    return { id, role, created: true }
  })
}

/** Creates a key for a user and returns it: the only time the whole key is ever seen. */
export async function createApiKey(
  db: Database,
  userId: string,
  name: string,
  key?: string,
): Promise<{ id: string; key: string }> {
  const generated = key ? { key, prefix: prefixOf(key), hash: sha256(key) } : generateApiKey()
  const id = newId('key', 9)
  await db.insert(apiKeys).values({ id, userId, name, prefix: generated.prefix, hash: generated.hash })
  return { id, key: generated.key }
}

export async function listApiKeys(db: Database) {
  return db
    .select({
      id: apiKeys.id,
      name: apiKeys.name,
      prefix: apiKeys.prefix,
      user: users.name,
      role: users.role,
      createdAt: apiKeys.createdAt,
      lastUsedAt: apiKeys.lastUsedAt,
      revokedAt: apiKeys.revokedAt,
    })
    .from(apiKeys)
    .innerJoin(users, eq(users.id, apiKeys.userId))
    .orderBy(apiKeys.createdAt)
}

/** Revokes a key by id or prefix; its login sessions go with it. Returns false when no active key matched. */
export async function revokeApiKey(db: Database, idOrPrefix: string): Promise<boolean> {
  const rows = await db
    .update(apiKeys)
    .set({ revokedAt: new Date() })
    .where(
      and(
        sql`(${apiKeys.id} = ${idOrPrefix} or ${apiKeys.prefix} = ${idOrPrefix})`,
        isNull(apiKeys.revokedAt),
      ),
    )
    .returning({ id: apiKeys.id })
  for (const row of rows)
    await db.update(authSessions).set({ revokedAt: new Date() }).where(eq(authSessions.apiKeyId, row.id))
  return rows.length > 0
}

export async function createLoginSession(db: Database, principal: Principal): Promise<string> {
  const token = randomBytes(32).toString('base64url')
  await db.insert(authSessions).values({
    id: newId('ses', 9),
    hash: sha256(token),
    userId: principal.userId,
    apiKeyId: principal.keyId,
  })
  return token
}

export async function verifyLoginSession(db: Database, token: string): Promise<Principal | null> {
  if (token.length < 20 || token.length > 100) return null
  const [row] = await db
    .select({
      userId: users.id,
      userName: users.name,
      role: users.role,
      keyId: apiKeys.id,
      keyName: apiKeys.name,
    })
    .from(authSessions)
    .innerJoin(users, eq(users.id, authSessions.userId))
    .leftJoin(apiKeys, eq(apiKeys.id, authSessions.apiKeyId))
    .where(
      and(
        eq(authSessions.hash, sha256(token)),
        isNull(authSessions.revokedAt),
        gt(authSessions.expiresAt, new Date()),
      ),
    )
    .limit(1)
  if (!row) return null
  return { ...row, keyId: row.keyId ?? null, keyName: row.keyName ?? null, via: 'session' }
}

export async function revokeLoginSession(db: Database, token: string): Promise<void> {
  await db
    .update(authSessions)
    .set({ revokedAt: new Date() })
    .where(eq(authSessions.hash, sha256(token)))
}

/**
 * Makes sure an admin can get in. ADMIN_API_KEY is registered if new; otherwise, when the database has
 * no active admin key at all, one is generated, saved under DATA_DIR with mode 0600 and returned once.
 */
export async function bootstrapAdmin(
  db: Database,
  opts: { adminApiKey?: string; dataDir: string },
): Promise<{ generatedKey?: string; keyFile?: string }> {
  if (opts.adminApiKey) {
    if (await verifyApiKey(db, opts.adminApiKey)) return {}
    const admin = await findOrCreateAdmin(db)
    await createApiKey(db, admin, 'ADMIN_API_KEY', opts.adminApiKey)
    return {}
  }
  const [active] = await db
    .select({ id: apiKeys.id })
    .from(apiKeys)
    .innerJoin(users, eq(users.id, apiKeys.userId))
    .where(and(eq(users.role, 'admin'), isNull(apiKeys.revokedAt)))
    .limit(1)
  if (active) return {}
  const admin = await findOrCreateAdmin(db)
  const { key } = await createApiKey(db, admin, 'generated at first start')
  mkdirSync(opts.dataDir, { recursive: true })
  const keyFile = join(opts.dataDir, 'admin-api-key')
  if (existsSync(keyFile)) chmodSync(keyFile, 0o600)
  writeFileSync(keyFile, `${key}\n`, { mode: 0o600 })
  chmodSync(keyFile, 0o600)
  return { generatedKey: key, keyFile }
}

async function findOrCreateAdmin(db: Database): Promise<string> {
  const [admin] = await db.select({ id: users.id }).from(users).where(eq(users.role, 'admin')).limit(1)
  return admin ? admin.id : (await createUser(db, 'admin', 'admin')).id
}
