/**
 * What the edge refuses before any route sees it, for HTTP and WebSocket alike: JSON nested past
 * MAX_JSON_DEPTH (checked on the raw text, before JSON.parse and validation ever recurse into it), bodies over
 * the limit however they are framed, and text that Postgres cannot store (NUL) or that is not Unicode (a lone
 * surrogate), in path, query, body or frame. Also the one parser of a resume position (`since`, Last-Event-ID).
 */
import { HttpError, Unprocessable } from './errors.ts'

/** Deeper than any body or frame Gantry takes (its deepest schema nests four levels). */
export const MAX_JSON_DEPTH = 64

export const invalidJson = (message: string) => new HttpError(400, 'invalid_json', message)
export const tooDeep = () =>
  new HttpError(
    400,
    'too_deep',
    `The JSON nests deeper than ${MAX_JSON_DEPTH} levels of arrays and objects.`,
    { max_depth: MAX_JSON_DEPTH },
  )
export const tooLarge = (limit: number, size?: number) =>
  new HttpError(
    413,
    'payload_too_large',
    size === undefined
      ? `The body is over the limit of ${limit} bytes (BODY_LIMIT_BYTES).`
      : `The body is ${size} bytes; the limit is ${limit} (BODY_LIMIT_BYTES).`,
    { limit_bytes: limit },
  )

const QUOTE = 34
const BACKSLASH = 92
const OPEN_BRACE = 123
const OPEN_BRACKET = 91
const CLOSE_BRACE = 125
const CLOSE_BRACKET = 93
const LOWER_U = 117

/**
 * One linear pass over JSON text: throws `too_deep` past MAX_JSON_DEPTH (brackets inside strings do not count),
 * and reports whether any string holds a `\u` escape of NUL or a surrogate, the only ways such text can reach
 * JSON.parse (raw control characters are invalid JSON; decoded UTF-8 never yields a lone surrogate).
 */
export function scanJson(text: string): { suspectText: boolean } {
  let depth = 0
  let suspectText = false
  const n = text.length
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      // Skip the string: to the next quote that is not escaped.
      for (i++; i < n; i++) {
        const s = text.charCodeAt(i)
        if (s === QUOTE) break
        if (s === BACKSLASH) {
          i++
          if (text.charCodeAt(i) === LOWER_U) {
            const code = Number.parseInt(text.slice(i + 1, i + 5), 16)
            if (code === 0 || (code >= 0xd800 && code <= 0xdfff)) suspectText = true
          }
        }
      }
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > MAX_JSON_DEPTH) throw tooDeep()
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--
  }
  return { suspectText }
}

/** Why a string cannot be stored, or undefined when it can. */
export function textFault(text: string): string | undefined {
  if (text.includes('\u0000')) return 'NUL characters (\\u0000) are not allowed in text'
  if (!text.isWellFormed()) return 'a lone surrogate is not valid Unicode text'
  return undefined
}

/** The first string (value or key) in a parsed value that cannot be stored, with its path; bounded in depth. */
export function findTextFault(
  value: unknown,
  path: string,
  depth = 0,
): { path: string; message: string } | undefined {
  if (typeof value === 'string') {
    const message = textFault(value)
    return message ? { path, message } : undefined
  }
  if (value === null || typeof value !== 'object') return undefined
  if (depth >= MAX_JSON_DEPTH) throw tooDeep()
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const fault = findTextFault(value[i], `${path}/${i}`, depth + 1)
      if (fault) return fault
    }
    return undefined
  }
  for (const key in value) {
    const keyFault = textFault(key)
    if (keyFault) return { path: `${path}/${key.replace(/[^\x20-\x7e]/g, '?')}`, message: keyFault }
    const fault = findTextFault((value as Record<string, unknown>)[key], `${path}/${key}`, depth + 1)
    if (fault) return fault
  }
  return undefined
}

const refuseText = (fault: { path: string; message: string }) =>
  Unprocessable(`Invalid ${fault.path}: ${fault.message}.`, [fault])

/** JSON text to a value: bounded depth first, then JSON.parse, then the text check (only when the scan saw cause). */
export function parseJsonText(text: string, where = 'body'): unknown {
  const { suspectText } = scanJson(text)
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw invalidJson(`The ${where} is not valid JSON: ${(err as Error).message}`)
  }
  if (suspectText) {
    const fault = findTextFault(value, where)
    if (fault) throw refuseText(fault)
  }
  return value
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Reads a request body as it streams in, stopping (and refusing with 413) as soon as it passes `limit`, whether
 * it came with a Content-Length or chunked. Undefined for an empty body.
 */
export async function readBodyText(request: Request, limit: number): Promise<string | undefined> {
  const stream = request.body
  if (!stream) return undefined
  const reader = stream.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > limit) {
      reader.cancel().catch(() => {})
      throw tooLarge(limit)
    }
    chunks.push(value)
  }
  if (size === 0) return undefined
  const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)
  try {
    return utf8.decode(bytes)
  } catch {
    throw invalidJson('The body is not valid UTF-8 text.')
  }
}

/**
 * NUL or a malformed escape anywhere in a URL (path or query), as a 422/400 naming the part. Only URLs with a
 * `%` can hold either (a raw NUL or a non-ASCII byte never gets past the HTTP parser), so most cost one search.
 */
export function urlFault(url: string): HttpError | undefined {
  if (!url.includes('%')) return undefined
  const start = url.indexOf('/', url.indexOf('//') + 2)
  const q = url.indexOf('?', start)
  const parts: [string, string][] = [['path', q === -1 ? url.slice(start) : url.slice(start, q)]]
  if (q !== -1)
    for (const pair of url.slice(q + 1).split('&')) {
      const eq = pair.indexOf('=')
      parts.push([`query/${eq === -1 ? pair : pair.slice(0, eq)}`, pair])
    }
  for (const [where, raw] of parts) {
    if (!raw.includes('%')) continue
    let text: string
    try {
      text = decodeURIComponent(raw.replaceAll('+', ' '))
    } catch {
      return new HttpError(
        400,
        'bad_request',
        `The ${where.replace(/[^\w/.-]/g, '?')} holds a malformed %-escape (or one that is not UTF-8).`,
      )
    }
    const message = textFault(text)
    if (message) return refuseText({ path: where.replace(/[^\w/.-]/g, '?'), message })
  }
  return undefined
}

/** The largest seq a client can name; events are numbered from 1 in a bigint column. */
const SEQ = /^\d{1,15}$/

/**
 * The one parser of a resume position: `?since=` on every socket and stream, and SSE's Last-Event-ID. Digits
 * only (no sign, fraction, exponent, hex or blank), at most 15 of them; absent (null) means from the start.
 */
export function parseSeq(raw: string | null | undefined, path = 'query/since', name = path): number {
  if (raw === undefined || raw === null) return 0
  if (!SEQ.test(raw))
    throw Unprocessable(
      `Invalid ${name}: expected the seq of the last event seen (a whole number ≥ 0), got "${raw.slice(0, 40)}".`,
      [{ path, message: 'Expected an integer ≥ 0 (digits only)' }],
    )
  return Number(raw)
}
