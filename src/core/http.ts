import { type Context, Elysia, ElysiaCustomStatusResponse } from 'elysia'
import { type Gantry, gantryContext } from './context.ts'
import { isDatabaseUnavailable } from './db.ts'
import { type ErrorPayload, HttpError, jsonError } from './errors.ts'
import { parseJsonText, readBodyText, tooLarge, urlFault } from './input.ts'
import { observeHttpRequest } from './metrics.ts'

type ServerLike = { requestIP(request: Request): { address: string } | null } | null | undefined

function ipv4ToInt(ip: string): number | undefined {
  const parts = ip.split('.')
  if (parts.length !== 4) return undefined
  let n = 0
  for (const p of parts) {
    const v = Number(p)
    if (!/^\d+$/.test(p) || v > 255) return undefined
    n = n * 256 + v
  }
  return n
}

/** `loopback`, an exact address, or an IPv4 CIDR such as 10.0.0.0/8. */
export function isTrustedProxy(address: string, trusted: string[]): boolean {
  const ip = address.startsWith('::ffff:') ? address.slice(7) : address
  for (const rule of trusted) {
    if (rule === 'loopback') {
      if (ip === '::1' || ip.startsWith('127.')) return true
    } else if (rule.includes('/')) {
      const [base, bits] = rule.split('/')
      const a = ipv4ToInt(ip)
      const b = ipv4ToInt(base!)
      const n = Number(bits)
      if (a !== undefined && b !== undefined && n >= 0 && n <= 32) {
        const mask = n === 0 ? 0 : (~0 << (32 - n)) >>> 0
        if ((a & mask) >>> 0 === (b & mask) >>> 0) return true
      }
    } else if (rule === ip) return true
  }
  return false
}

/** The client's address: the peer, or the last hop that a trusted proxy appended to X-Forwarded-For. */
export function clientAddress(request: Request, server: ServerLike, trusted: string[]): string {
  const peer = server?.requestIP(request)?.address ?? 'unknown'
  if (!isTrustedProxy(peer, trusted)) return peer
  const forwarded = request.headers.get('x-forwarded-for')
  const last = forwarded?.split(',').pop()?.trim()
  return last || peer
}

function fromTrustedProxy(request: Request, gantry: Gantry): boolean {
  const peer = (gantry.state.get('core:server') as ServerLike)?.requestIP(request)?.address
  return peer !== undefined && isTrustedProxy(peer, gantry.config.trustedProxies)
}

export function isSecureRequest(request: Request, gantry: Gantry): boolean {
  if (request.url.startsWith('https:')) return true
  return fromTrustedProxy(request, gantry) && request.headers.get('x-forwarded-proto') === 'https'
}

/**
 * The origin clients used to reach us (`https://gantry.lan`), honouring X-Forwarded-Proto/Host from a trusted
 * proxy, so that URLs we hand out (websocket_url, events_url) work behind nginx.
 */
export function publicOrigin(request: Request, gantry: Gantry): { http: string; ws: string } {
  const url = new URL(request.url)
  let proto = url.protocol.replace(':', '')
  let host = request.headers.get('host') ?? url.host
  if (fromTrustedProxy(request, gantry)) {
    const fp = request.headers.get('x-forwarded-proto')?.split(',')[0]?.trim()
    const fh = request.headers.get('x-forwarded-host')?.split(',')[0]?.trim()
    if (fp === 'http' || fp === 'https') proto = fp
    if (fh && /^[\w.-]+(:\d+)?$|^\[[\da-f:]+\](:\d+)?$/i.test(fh)) host = fh
  }
  // A proxy may name the default port (nginx sends $host:$server_port); browsers never do, in Origin or URLs.
  if ((proto === 'https' && host.endsWith(':443')) || (proto === 'http' && host.endsWith(':80'))) {
    host = host.slice(0, host.lastIndexOf(':'))
  }
  return { http: `${proto}://${host}`, ws: `${proto === 'https' ? 'wss' : 'ws'}://${host}` }
}

/**
 * An Origin header is acceptable when it is in CORS_ORIGINS (or `*`) or is this server's own origin. No Origin
 * at all passes here (clients that are not browsers send none); see fromAllowedOrigin for state changes.
 */
export function originAllowed(request: Request, gantry: Gantry): boolean {
  const origin = request.headers.get('origin')
  if (!origin) return true
  const allowed = gantry.config.corsOrigins
  if (allowed.includes('*') || allowed.includes(origin)) return true
  const own = publicOrigin(request, gantry)
  return (
    origin === own.http ||
    origin === `http://${request.headers.get('host')}` ||
    origin === `https://${request.headers.get('host')}`
  )
}

/**
 * Whether a browser sent this request from an allowed origin: the WebSocket upgrade's Origin check, and, for
 * browsers that omit Origin, Sec-Fetch-Site: same-origin. A request with neither did not come from a page.
 */
export function fromAllowedOrigin(request: Request, gantry: Gantry): boolean {
  if (request.headers.has('origin')) return originAllowed(request, gantry)
  return request.headers.get('sec-fetch-site') === 'same-origin'
}

export const SESSION_COOKIE = 'gantry_session'
/** `Authorization: Bearer <key>`: with it, the cookie is never consulted (see authenticate). */
export const BEARER = /^Bearer\s+(\S+)\s*$/i

/**
 * CSRF: a state-changing request that the session cookie would authenticate must come from an allowed origin.
 * A key in Authorization is never sent by a browser on its own, so Bearer requests pass from anywhere.
 */
function crossSiteCookieRequest(request: Request, gantry: Gantry): boolean {
  const cookie = request.headers.get('cookie')
  if (!cookie?.includes(`${SESSION_COOKIE}=`)) return false
  if (BEARER.test(request.headers.get('authorization') ?? '')) return false
  return !fromAllowedOrigin(request, gantry)
}

const REQUEST_ID = /^[\w.:-]{1,128}$/

/**
 * Request ids: a random prefix per process and a counter, unique across instances and restarts for all
 * practical purposes, and a fraction of the cost of a UUID on every request.
 */
const REQUEST_ID_PREFIX = crypto.randomUUID().slice(0, 8)
let requestCounter = 0
const nextRequestId = () => `${REQUEST_ID_PREFIX}-${(++requestCounter).toString(36)}`

/**
 * What the HTTP layer remembers of one request: its id, when it started, the caller once auth knows it, and
 * whether its line is written. One small object of one shape per request, kept beside the Request rather than
 * on Elysia's context object: Elysia reads each hook's parameter list to decide which parts of the context to
 * build, and a hook that takes the whole context makes it build all of them (query, headers, cookies).
 */
class RequestState {
  userId: string | undefined = undefined
  logged = false
  constructor(
    readonly requestId: string,
    readonly startedAt: number,
  ) {}
}

/**
 * Where a request's state lives: on the Request itself, under a symbol no one else knows. A WeakMap did the
 * same at the price of a hash insert per request and weak-key work in every garbage collection.
 */
const STATE = Symbol('gantry:request')
const stateOf = (request: Request | undefined) =>
  (request as unknown as { [STATE]?: RequestState } | undefined)?.[STATE]

/** The id of a request, as returned in x-request-id (for handlers that report errors themselves). */
export const requestIdOf = (request: Request): string | undefined => stateOf(request)?.requestId

/** Names the caller on the request's log line (auth calls it once the key or cookie is verified). */
export function noteCaller(request: Request, userId: string): void {
  const state = stateOf(request)
  if (state) state.userId = userId
}

/**
 * The one line per request, written once: where the answer is decided (a refusal before routing, the value a
 * route returns just before Elysia turns it into a Response, or the error handler), never in onAfterResponse,
 * which Elysia compiles into a setImmediate and an async closure per request. A streamed body (SSE) is logged
 * when its head is sent, as before: wrapping the stream to log at its end would sit between the producer and
 * Bun's backpressure, which the slow-reader checks read.
 */
function logOnce(
  gantry: Gantry,
  request: Request,
  path: string,
  route: string | undefined,
  status: number,
): void {
  // A WebSocket handler's error reaches onError after its socket let the HTTP request go: no line to write.
  if (request === undefined) return
  const state = stateOf(request)
  if (state === undefined) {
    gantry.logRequest({ reqId: 'unknown', method: request.method, path, status, ms: undefined })
    return
  }
  if (state.logged) return
  state.logged = true
  const ms = Math.round((performance.now() - state.startedAt) * 100) / 100
  gantry.logRequest({
    reqId: state.requestId,
    method: request.method,
    path,
    status,
    ms,
    userId: state.userId,
  })
  // The request duration histogram (GET /metrics): plain numbers by route template, formatted only when scraped.
  observeHttpRequest(request.method, route, status, ms)
}

/** The path of a URL without its query, as Elysia's `path` (for answers given before routing). */
function pathOf(url: string): string {
  const start = url.indexOf('/', url.indexOf('//') + 2)
  const query = url.indexOf('?', start)
  return query === -1 ? url.slice(start) : url.slice(start, query)
}

/** The status Elysia will answer with for a route's return value. */
function statusOf(response: unknown, set: Context['set']): number {
  if (response instanceof Response) return response.status
  if (response instanceof ElysiaCustomStatusResponse) return response.code
  return typeof set.status === 'number' ? set.status : 200
}

const JSON_TYPE = /^application\/(?:[\w.+-]*\+)?json\b/i

/** CORS headers for an allowed Origin; a preflight is answered here (204). */
function corsHeaders(request: Request, set: Context['set'], origin: string): string | undefined {
  set.headers['access-control-allow-origin'] = origin
  set.headers['access-control-allow-credentials'] = 'true'
  set.headers.vary = 'Origin'
  if (request.method !== 'OPTIONS') return undefined
  set.headers['access-control-allow-methods'] = 'GET, POST, PATCH, PUT, DELETE, OPTIONS'
  set.headers['access-control-allow-headers'] =
    request.headers.get('access-control-request-headers') ?? 'authorization, content-type'
  set.headers['access-control-max-age'] = '600'
  set.status = 204
  return ''
}

const reject = (set: Context['set'], requestId: string, error: HttpError) => {
  set.status = error.status
  return jsonError(
    error.status,
    { ...error.toJSON(), request_id: requestId },
    { 'x-request-id': requestId, ...error.headers },
  )
}

/**
 * Before routing, for methods that change state: 403 for a cookie from a foreign origin, 415 for a body that is
 * not JSON (whatever its length: an empty form post is still a form post), 413 by Content-Length.
 */
function refuseChange(request: Request, gantry: Gantry): HttpError | undefined {
  if (crossSiteCookieRequest(request, gantry))
    return new HttpError(
      403,
      'forbidden_origin',
      `A request that changes something and carries the session cookie must come from this server's own pages (Origin ${request.headers.get('origin') ?? 'absent'}, Sec-Fetch-Site ${request.headers.get('sec-fetch-site') ?? 'absent'}); API clients send Authorization: Bearer.`,
    )
  const contentType = request.headers.get('content-type')
  if (contentType && !JSON_TYPE.test(contentType))
    return new HttpError(
      415,
      'unsupported_media_type',
      `Send the body as application/json (got ${contentType.split(';')[0]}).`,
    )
  const length = Number(request.headers.get('content-length') ?? 0)
  if (length > gantry.config.bodyLimitBytes) return tooLarge(gantry.config.bodyLimitBytes, length)
  return undefined
}

/** Per app, the routes declared with `parse: 'none'`, which read their request body themselves (e.g. /mcp). */
const rawBodyRoutes = new WeakMap<Gantry, Set<string>>()

async function parseBody({ request, gantry, route }: { request: Request; gantry: Gantry; route: string }) {
  if (rawBodyRoutes.get(gantry)?.has(`${request.method} ${route}`)) return null
  const text = await readBodyText(request, gantry.config.bodyLimitBytes)
  return text === undefined ? null : parseJsonText(text)
}

/**
 * Call once the app has every route, before it serves: a route with `parse: 'none'` keeps its body stream unread
 * by the layer below (it must apply BODY_LIMIT_BYTES itself). Elysia still runs the global parse hook first on
 * such a route. A GET or HEAD route never parses a body (Elysia emits no parse step for them), but any parse
 * hook makes Elysia compile its handler as async: a promise and a microtask per request. Dropping the body
 * parser from those routes keeps a synchronous route synchronous.
 */
export function noteRawBodyRoutes(
  gantry: Gantry,
  routes: { method: string; path: string; hooks: unknown }[],
) {
  const raw = new Set<string>()
  for (const r of routes) {
    const hooks = r.hooks as { parse?: { fn: unknown }[] }
    if (hooks.parse?.some((h) => h.fn === 'none')) raw.add(`${r.method} ${r.path}`)
    if ((r.method === 'GET' || r.method === 'HEAD') && hooks.parse?.length) {
      const kept = hooks.parse.filter((h) => h.fn !== parseBody)
      if (kept.length) hooks.parse = kept
      else delete hooks.parse
    }
  }
  rawBodyRoutes.set(gantry, raw)
}

/**
 * The cross-cutting HTTP layer, global to every plugin: request ids, one log line per request, the body limit,
 * JSON-only bodies, CORS, and the single mapping from any error to `{error, message, details?}`.
 */
export const httpLayer = new Elysia({ name: 'gantry:http' })
  .use(gantryContext)
  // Kept free of `return f(…)` and `await` in its text: Elysia guesses from a hook's source whether it is async,
  // and an "async" request hook makes every route's handler async (a promise and a microtask per request).
  .onRequest(({ request, set, gantry }) => {
    const incoming = request.headers.get('x-request-id')
    const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : nextRequestId()
    ;(request as unknown as { [STATE]: RequestState })[STATE] = new RequestState(requestId, performance.now())
    set.headers['x-request-id'] = requestId
    let early: Response | string | undefined
    // Without CORS_ORIGINS there is nothing to answer a foreign page with: the Origin header is not even read.
    const origin = gantry.config.corsOrigins.length ? request.headers.get('origin') : null
    if (origin && originAllowed(request, gantry)) early = corsHeaders(request, set, origin)
    // NUL or a broken %-escape in the path or query: one search of the URL for a '%' in the common case.
    let refusal = early === undefined ? urlFault(request.url) : undefined
    // Bodies and state changes only come with these methods; a GET pays for none of the checks below.
    const method = request.method
    if (!refusal && early === undefined && method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS')
      refusal = refuseChange(request, gantry)
    if (refusal) early = reject(set, requestId, refusal)
    // Answered here, before any route: its line is written here too (no later hook sees this request).
    if (early !== undefined)
      logOnce(
        gantry,
        request,
        pathOf(request.url),
        undefined,
        typeof set.status === 'number' ? set.status : 200,
      )
    return early
  })
  // Every body is read here, for every route that takes one: as it streams in (a chunked body is cut off at
  // BODY_LIMIT_BYTES as surely as a declared one), then depth-checked on the raw text before JSON.parse and
  // validation see it. null, never undefined, for no body: undefined would let Elysia try its own parser.
  .onParse({ as: 'global' }, parseBody)
  // Runs for what a route returns (after response validation) and, at route level, after onError: the line is
  // written by whichever of this and onError comes first. Returns nothing, so the response is Elysia's own.
  .mapResponse({ as: 'global' }, ({ request, response, set, path, route, gantry }) => {
    logOnce(gantry, request, path, route, statusOf(response, set))
  })
  .onError({ as: 'global' }, ({ code, error, set, request, path, route, gantry }) => {
    const requestId = stateOf(request)?.requestId ?? nextRequestId()
    const reply = (status: number, payload: ErrorPayload, headers?: Record<string, string>) => {
      set.status = status
      logOnce(gantry, request, path, route, status)
      return jsonError(
        status,
        { ...payload, request_id: requestId },
        { 'x-request-id': requestId, ...headers },
      )
    }
    if (error instanceof HttpError) return reply(error.status, error.toJSON(), error.headers)
    // Elysia wraps whatever the body parser throws; the edge's own refusals keep their status and code.
    const cause = (error as { cause?: unknown })?.cause
    if (code === 'PARSE' && cause instanceof HttpError)
      return reply(cause.status, cause.toJSON(), cause.headers)
    switch (code) {
      case 'VALIDATION': {
        if (error.type === 'response') break
        const details = error.all.slice(0, 20).map((e: any) => ({
          path: `${error.type}${e.path || ''}`,
          message: e.message,
        }))
        const first = details[0]
        return reply(422, {
          error: 'validation_failed',
          message: first ? `Invalid ${first.path}: ${first.message}` : `Invalid ${error.type}`,
          details,
        })
      }
      case 'PARSE':
        return reply(400, { error: 'invalid_json', message: 'The body is not valid JSON.' })
      case 'NOT_FOUND':
        return reply(404, {
          error: 'not_found',
          message: `No route for ${request.method} ${new URL(request.url).pathname}`,
        })
      case 'INVALID_COOKIE_SIGNATURE':
        return reply(400, { error: 'bad_cookie', message: 'A cookie could not be verified.' })
    }
    if (isDatabaseUnavailable(error)) {
      gantry.log.warn({ reqId: requestId, err: (error as Error).message }, 'database unavailable')
      return reply(
        503,
        { error: 'database_unavailable', message: 'The database is not reachable right now; retry shortly.' },
        {
          'retry-after': '5',
        },
      )
    }
    // A custom status thrown through Elysia (`throw status(...)`) keeps its code.
    const status = typeof (error as any)?.status === 'number' ? (error as any).status : 500
    if (status >= 400 && status < 500)
      return reply(status, {
        error: 'bad_request',
        message: String((error as Error).message ?? 'Bad request'),
      })
    gantry.log.error({ reqId: requestId, err: error }, 'unhandled error')
    return reply(500, {
      error: 'internal_error',
      message: `Something went wrong on our side. Quote request id ${requestId} when reporting it.`,
    })
  })
  .as('global')
