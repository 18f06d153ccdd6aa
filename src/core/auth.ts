import { Elysia, t } from 'elysia'
import { type Gantry, gantryContext } from './context.ts'
import { Conflict, ErrorBody, Forbidden, HttpError, NotFound, TooMany, Unauthorized } from './errors.ts'
import { BEARER, clientAddress, isSecureRequest, noteCaller, SESSION_COOKIE } from './http.ts'
import {
  createApiKey,
  createLoginSession,
  findOrCreateUser,
  listApiKeys,
  type Principal,
  revokeApiKey,
  revokeLoginSession,
  touchApiKey,
  verifyApiKey,
  verifyLoginSession,
} from './keys.ts'

export type { Principal }
export { SESSION_COOKIE }

const CACHE_TTL_MS = 2000
const CACHE_MAX = 10_000

/**
 * Verified credentials, remembered for two seconds so that a busy client costs one lookup, not one per
 * request. Logout and revocation through this instance evict at once (the whole cache); other instances follow
 * within the TTL. Keyed by the credential itself (`k:<key>` or `s:<session token>`), not a digest of it: an exact
 * string key cannot collide, and a busy client's request then costs one map lookup instead of a SHA-256. The
 * secret stays in memory no longer than the request that carried it would keep it reachable anyway, plus the TTL.
 */
class PrincipalCache {
  private readonly entries = new Map<string, { principal: Principal; until: number }>()

  get(credential: string): Principal | undefined {
    const hit = this.entries.get(credential)
    if (!hit) return undefined
    if (hit.until > Date.now()) return hit.principal
    this.entries.delete(credential)
    return undefined
  }

  set(credential: string, principal: Principal): void {
    if (this.entries.size >= CACHE_MAX) this.entries.clear()
    this.entries.set(credential, { principal, until: Date.now() + CACHE_TTL_MS })
  }

  clear(): void {
    this.entries.clear()
  }
}

/** Failed logins per address: 10 within 10 minutes locks that address out for the rest of the window. */
export class LoginLimiter {
  private readonly failures = new Map<string, number[]>()
  constructor(
    private readonly max = 10,
    private readonly windowMs = 10 * 60_000,
  ) {}

  /** Seconds until the address may try again, or 0. */
  retryAfter(address: string): number {
    const recent = this.recent(address)
    if (recent.length < this.max) return 0
    return Math.ceil((recent[0]! + this.windowMs - Date.now()) / 1000)
  }

  fail(address: string): void {
    const recent = this.recent(address)
    recent.push(Date.now())
    this.failures.set(address, recent)
    if (this.failures.size > 50_000) this.failures.clear()
  }

  succeed(address: string): void {
    this.failures.delete(address)
  }

  private recent(address: string): number[] {
    const cutoff = Date.now() - this.windowMs
    return (this.failures.get(address) ?? []).filter((at) => at > cutoff)
  }
}

function authState(gantry: Gantry): { cache: PrincipalCache; limiter: LoginLimiter } {
  let state = gantry.state.get('core:auth') as { cache: PrincipalCache; limiter: LoginLimiter } | undefined
  if (!state) {
    state = { cache: new PrincipalCache(), limiter: new LoginLimiter() }
    gantry.state.set('core:auth', state)
  }
  return state
}

/** Forgets every cached credential of this instance (after a revocation). */
export function forgetCredentials(gantry: Gantry): void {
  authState(gantry).cache.clear()
}

export function readCookie(header: string | null, name: string): string | undefined {
  if (!header) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim())
  }
  return undefined
}

function bearerOf(header: string | null): string | undefined {
  if (!header) return undefined
  const m = BEARER.exec(header)
  return m ? m[1] : undefined
}

/** `k:<key>` for a Bearer key, `s:<token>` for the session cookie, or undefined when the request has neither. */
function credentialOf(request: Request): string | undefined {
  const bearer = bearerOf(request.headers.get('authorization'))
  if (bearer) return `k:${bearer}`
  const cookie = readCookie(request.headers.get('cookie'), SESSION_COOKIE)
  return cookie ? `s:${cookie}` : undefined
}

/**
 * Resolves the caller of a request from `Authorization: Bearer <key>` or the session cookie.
 * Returns null when neither is present or valid. Also used before WebSocket upgrades.
 */
export async function authenticate(gantry: Gantry, request: Request): Promise<Principal | null> {
  const credential = credentialOf(request)
  if (!credential) return null
  return authState(gantry).cache.get(credential) ?? verify(gantry, credential)
}

async function verify(gantry: Gantry, credential: string): Promise<Principal | null> {
  const secret = credential.slice(2)
  const principal = credential.startsWith('k:')
    ? await verifyApiKey(gantry.db, secret)
    : await verifyLoginSession(gantry.db, secret)
  if (principal) {
    authState(gantry).cache.set(credential, principal)
    // At most once per cache period per key: cheap enough to keep "last used" honest.
    if (principal.keyId) touchApiKey(gantry.db, principal.keyId).catch(() => {})
  }
  return principal
}

/** True when the principal may see a resource owned by `ownerId`: its owner, or an admin. */
export const canSee = (principal: Principal, ownerId: string) =>
  principal.role === 'admin' || principal.userId === ownerId

export const PrincipalBody = t.Object(
  {
    user_id: t.String(),
    user: t.String(),
    role: t.Union([t.Literal('admin'), t.Literal('user')]),
    key_id: t.Nullable(t.String()),
    key_name: t.Nullable(t.String()),
    via: t.Union([t.Literal('api_key'), t.Literal('session')]),
  },
  { description: 'The authenticated caller' },
)

export const toPrincipalBody = (p: Principal) => ({
  user_id: p.userId,
  user: p.userName,
  role: p.role,
  key_id: p.keyId,
  key_name: p.keyName,
  via: p.via,
})

/**
 * The `auth` macro: `{ auth: true }` needs any user, `{ auth: 'admin' }` an admin. Adds `user` to the context.
 * @example app.use(auth).get('/mine', ({ user }) => user.userId, { auth: true })
 */
export const auth = new Elysia({ name: 'gantry:auth' }).use(gantryContext).macro({
  auth: (required: boolean | 'admin') => ({
    async resolve({ gantry, request }) {
      if (!required) return { user: null as unknown as Principal }
      // A cached credential resolves without another promise; only a miss waits for the database.
      const credential = credentialOf(request)
      const user = credential
        ? (authState(gantry).cache.get(credential) ?? (await verify(gantry, credential)))
        : null
      if (!user) throw Unauthorized()
      noteCaller(request, user.userId)
      if (required === 'admin' && user.role !== 'admin') throw Forbidden('This needs an admin key.')
      return { user }
    },
  }),
})

const cookieAttributes = (request: Request, gantry: Gantry, maxAge: number) =>
  `Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${isSecureRequest(request, gantry) ? '; Secure' : ''}`

/** Browser login and identity routes: POST /api/auth/login, POST /api/auth/logout, GET /api/me. */
export const authRoutes = new Elysia({ name: 'gantry:auth-routes', tags: ['Auth'] })
  .use(auth)
  .post(
    '/api/auth/login',
    async ({ body, gantry, request, set }) => {
      const { limiter } = authState(gantry)
      // The seam's server, not Elysia's `server` (null on Deno, where Elysia does not serve).
      const server = gantry.state.get('core:server') as Parameters<typeof clientAddress>[1]
      const address = clientAddress(request, server, gantry.config.trustedProxies)
      const wait = limiter.retryAfter(address)
      if (wait > 0) throw TooMany(`Too many failed logins from ${address}; try again in ${wait} s.`, wait)
      const principal = await verifyApiKey(gantry.db, body.api_key)
      if (!principal) {
        limiter.fail(address)
        throw new HttpError(401, 'invalid_api_key', 'That API key is not valid (unknown or revoked).')
      }
      limiter.succeed(address)
      const token = await createLoginSession(gantry.db, principal)
      set.headers['set-cookie'] =
        `${SESSION_COOKIE}=${token}; ${cookieAttributes(request, gantry, 7 * 86400)}`
      return toPrincipalBody({ ...principal, via: 'session' })
    },
    {
      body: t.Object(
        { api_key: t.String({ minLength: 1, maxLength: 512, description: 'An API key' }) },
        { example: { api_key: 'gk_0a1b2c3d_your-key-from-npm-run-keys' } },
      ),
      response: { 200: PrincipalBody, 401: ErrorBody, 422: ErrorBody, 429: ErrorBody },
      detail: {
        summary: 'Log in with an API key',
        description:
          'Sets an HttpOnly, SameSite=Strict session cookie for browsers. Ten failed attempts from one address within ten minutes answer 429 until the window passes.',
        security: [],
      },
    },
  )
  .post(
    '/api/auth/logout',
    async ({ gantry, request, set }) => {
      const token = readCookie(request.headers.get('cookie'), SESSION_COOKIE)
      if (token) {
        await revokeLoginSession(gantry.db, token)
        forgetCredentials(gantry)
      }
      set.headers['set-cookie'] = `${SESSION_COOKIE}=; ${cookieAttributes(request, gantry, 0)}`
      return { logged_out: Boolean(token) }
    },
    {
      response: { 200: t.Object({ logged_out: t.Boolean() }) },
      detail: { summary: 'Log out', description: 'Revokes the session cookie, if any.', security: [] },
    },
  )
  .get('/api/me', ({ user }) => toPrincipalBody(user), {
    auth: true,
    response: { 200: PrincipalBody, 401: ErrorBody },
    detail: { summary: 'Who am I', description: 'The user, role and key behind this request.' },
  })

const KeyBody = t.Object({
  id: t.String(),
  name: t.String(),
  prefix: t.String(),
  user: t.String(),
  role: t.String(),
  created_at: t.String(),
  last_used_at: t.Nullable(t.String()),
  revoked_at: t.Nullable(t.String()),
})

/** Admin key management over HTTP (the same as `npm run keys`), usable while the server owns the database. */
export const keyRoutes = new Elysia({ name: 'gantry:key-routes', tags: ['Auth'] })
  .use(auth)
  .get(
    '/api/keys',
    async ({ gantry }) =>
      (await listApiKeys(gantry.db)).map((k) => ({
        id: k.id,
        name: k.name,
        prefix: k.prefix,
        user: k.user,
        role: k.role,
        created_at: k.createdAt.toISOString(),
        last_used_at: k.lastUsedAt?.toISOString() ?? null,
        revoked_at: k.revokedAt?.toISOString() ?? null,
      })),
    {
      auth: 'admin',
      response: { 200: t.Array(KeyBody), 401: ErrorBody, 403: ErrorBody },
      detail: {
        summary: 'List API keys',
        description: 'Every key with its user; never the secret. Admins only.',
      },
    },
  )
  .post(
    '/api/keys',
    async ({ gantry, body, set }) => {
      // A key for an existing name is that user's, never a second user of the same name.
      const user = await findOrCreateUser(gantry.db, body.user, body.role ?? 'user')
      if (!user.created && body.role && body.role !== user.role)
        throw Conflict(`User "${body.user}" exists as ${user.role}; keys do not change roles.`, {
          role: user.role,
        })
      const created = await createApiKey(gantry.db, user.id, body.name ?? `${body.user}'s key`)
      set.status = 201
      return { id: created.id, key: created.key, user_id: user.id, user: body.user, role: user.role }
    },
    {
      auth: 'admin',
      body: t.Object(
        {
          user: t.String({ minLength: 1, maxLength: 100, description: 'Name of the new user' }),
          role: t.Optional(t.Union([t.Literal('admin'), t.Literal('user')])),
          name: t.Optional(t.String({ minLength: 1, maxLength: 100, description: 'A label for the key' })),
        },
        { additionalProperties: false, example: { user: 'alice', role: 'user', name: "alice's laptop" } },
      ),
      response: {
        201: t.Object({
          id: t.String(),
          key: t.String(),
          user_id: t.String(),
          user: t.String(),
          role: t.String(),
        }),
        401: ErrorBody,
        403: ErrorBody,
        409: ErrorBody,
        422: ErrorBody,
      },
      detail: {
        summary: 'Create a user and key',
        description:
          'A new key for `user`, who is created when the name is new. The key is shown only in this response. 409 when the user exists with another `role`. Admins only.',
      },
    },
  )
  .delete(
    '/api/keys/:id',
    async ({ gantry, params }) => {
      if (!(await revokeApiKey(gantry.db, params.id))) throw NotFound(`Active key ${params.id}`)
      forgetCredentials(gantry)
      return { revoked: params.id }
    },
    {
      auth: 'admin',
      response: { 200: t.Object({ revoked: t.String() }), 401: ErrorBody, 403: ErrorBody, 404: ErrorBody },
      detail: {
        summary: 'Revoke a key',
        description: 'By id or prefix; its login sessions end too. Admins only.',
      },
    },
  )
