import { type Context, Elysia } from 'elysia'
import { type Gantry, gantryContext } from './context.ts'
import { isDatabaseUnavailable } from './db.ts'
import { type ErrorPayload, HttpError, jsonError } from './errors.ts'

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

/** An Origin header is acceptable when it is in CORS_ORIGINS (or `*`) or is this server's own origin. */
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

const REQUEST_ID = /^[\w.:-]{1,128}$/

/**
 * Request ids: a random prefix per process and a counter, unique across instances and restarts for all
 * practical purposes, and a fraction of the cost of a UUID on every request.
 */
const REQUEST_ID_PREFIX = crypto.randomUUID().slice(0, 8)
let requestCounter = 0
const nextRequestId = () => `${REQUEST_ID_PREFIX}-${(++requestCounter).toString(36)}`

interface Timing {
  requestId: string
  startedAt: number
}

/**
 * Request id and start time per request. Kept beside the request rather than on Elysia's context object: Elysia
 * reads each hook's parameter list to decide which parts of the context to build, and a hook that takes the
 * whole context makes it build all of them (query, headers, cookies) for every request.
 */
const timings = new WeakMap<Request, Timing>()

/** The id of a request, as returned in x-request-id (for handlers that report errors themselves). */
export const requestIdOf = (request: Request): string | undefined => timings.get(request)?.requestId

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

/** 415 for a body that is not JSON, 413 for one over BODY_LIMIT_BYTES (by Content-Length), before routing. */
function refuseBody(
  request: Request,
  set: Context['set'],
  gantry: Gantry,
  requestId: string,
): Response | undefined {
  const length = Number(request.headers.get('content-length') ?? 0)
  const contentType = request.headers.get('content-type')
  const reject = (status: number, payload: ErrorPayload) => {
    set.status = status
    return jsonError(status, { ...payload, request_id: requestId }, { 'x-request-id': requestId })
  }
  if ((length > 0 || request.headers.has('transfer-encoding')) && contentType && !JSON_TYPE.test(contentType))
    return reject(415, {
      error: 'unsupported_media_type',
      message: `Send the body as application/json (got ${contentType.split(';')[0]}).`,
    })
  if (length > gantry.config.bodyLimitBytes)
    return reject(413, {
      error: 'payload_too_large',
      message: `The body is ${length} bytes; the limit is ${gantry.config.bodyLimitBytes} (BODY_LIMIT_BYTES).`,
      details: { limit_bytes: gantry.config.bodyLimitBytes },
    })
  return undefined
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
    timings.set(request, { requestId, startedAt: performance.now() })
    set.headers['x-request-id'] = requestId
    let early: Response | string | undefined
    const origin = request.headers.get('origin')
    if (origin && gantry.config.corsOrigins.length && originAllowed(request, gantry))
      early = corsHeaders(request, set, origin)
    // Bodies only come with these methods; a GET pays for none of the checks below.
    const method = request.method
    if (early === undefined && method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS')
      early = refuseBody(request, set, gantry, requestId)
    return early
  })
  .onAfterResponse({ as: 'global' }, ({ request, set, path, gantry }) => {
    const timing = timings.get(request) ?? { requestId: 'unknown', startedAt: 0 }
    const status = typeof set.status === 'number' ? set.status : 200
    const ms = timing.startedAt ? Math.round((performance.now() - timing.startedAt) * 100) / 100 : undefined
    gantry.logRequest({ reqId: timing.requestId, method: request.method, path, status, ms })
  })
  .onError({ as: 'global' }, ({ code, error, set, request, gantry }) => {
    const requestId = timings.get(request)?.requestId ?? nextRequestId()
    const reply = (status: number, payload: ErrorPayload, headers?: Record<string, string>) => {
      set.status = status
      return jsonError(
        status,
        { ...payload, request_id: requestId },
        { 'x-request-id': requestId, ...headers },
      )
    }
    if (error instanceof HttpError) return reply(error.status, error.toJSON(), error.headers)
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
        return reply(400, { error: 'malformed_body', message: 'The body is not valid JSON.' })
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
