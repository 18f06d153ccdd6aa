/**
 * The typed Eden client for one connection, and the one place that turns transport and HTTP failures into
 * the CLI's messages and exit codes: unreachable and refused keys exit 2, a missing thing exits 1.
 */
import { treaty } from '@elysiajs/eden'
import type { App } from '../../app-type.ts'
import type { Connection } from './config.ts'
import { CliError, EXIT } from './errors.ts'

export type Api = ReturnType<typeof treaty<App>>

/** The server could not be reached at all: refused, reset, DNS, TLS. */
export class Unreachable extends CliError {
  constructor(
    readonly connection: Connection,
    cause: unknown,
  ) {
    super(unreachableMessage(connection, cause), EXIT.usage)
  }
}

function unreachableMessage(connection: Connection, cause: unknown): string {
  const why = (cause as { code?: string })?.code ?? (cause as Error)?.message ?? String(cause)
  return `cannot reach the Gantry server at ${connection.url} (${why}); is it running? Set the address with --url or GANTRY_URL (now from ${connection.urlFrom}).`
}

export function authHeaders(connection: Connection): Record<string, string> {
  return connection.key ? { authorization: `Bearer ${connection.key}` } : {}
}

/** fetch that reports an unreachable server as `Unreachable`, so every caller says the same thing. */
export function connectionFetch(connection: Connection): typeof fetch {
  const wrapped = async (input: RequestInfo | URL, init?: RequestInit) => {
    try {
      return await fetch(input, init)
    } catch (err) {
      if ((err as Error)?.name === 'AbortError' || (err as Error)?.name === 'TimeoutError') throw err
      throw new Unreachable(connection, err)
    }
  }
  return wrapped as typeof fetch
}

export function createApi(connection: Connection): Api {
  return treaty<App>(connection.url, {
    headers: authHeaders(connection),
    fetcher: connectionFetch(connection),
  })
}

interface EdenResult {
  data: unknown
  error: unknown
  status: number
}

/** What the server said in its `{error, message}` body, or the raw text. */
export function serverMessage(value: unknown): { code?: string; message: string } {
  if (value && typeof value === 'object') {
    const v = value as { error?: unknown; message?: unknown }
    return {
      code: typeof v.error === 'string' ? v.error : undefined,
      message: typeof v.message === 'string' ? v.message : JSON.stringify(value),
    }
  }
  return { message: String(value ?? '') }
}

export interface CallOptions {
  /** What a 404 means here, e.g. `no task task-x`. */
  notFound?: string
}

/** Unwraps an Eden call: the data on 2xx, else a CliError that says what went wrong. */
export async function call<R extends EdenResult>(
  connection: Connection,
  request: Promise<R>,
  options: CallOptions = {},
): Promise<NonNullable<R['data']>> {
  const result = await request
  if (!result.error && result.status < 300) return result.data as NonNullable<R['data']>
  const error = result.error as { value?: unknown } | null
  // Eden hands a thrown fetch back as an error value rather than rejecting.
  if (error?.value instanceof CliError) throw error.value
  if (error?.value instanceof Error) throw new Unreachable(connection, error.value)
  throw httpError(connection, result.status, error?.value ?? result.data, options)
}

export function httpError(
  connection: Connection,
  status: number,
  body: unknown,
  options: CallOptions = {},
): CliError {
  const { code, message } = serverMessage(body)
  if (status === 401) {
    const hint = connection.key
      ? `the API key from ${connection.keyFrom} was refused by ${connection.url} (wrong or revoked key)`
      : `no API key: run gantry login, or pass --key or set GANTRY_API_KEY`
    return new CliError(hint, EXIT.usage)
  }
  if (status === 403) return new CliError(`not allowed: ${message}`, EXIT.usage)
  // The server refused what was asked (a field out of range, a body too large): a usage error.
  if (status === 400 || status === 413 || status === 415 || status === 422)
    return new CliError(`the server refused the request: ${message}`, EXIT.usage)
  if (status === 404 && options.notFound) return new CliError(options.notFound, EXIT.failed)
  if (status === 502 || status === 503 || status === 504)
    return new CliError(`${connection.url} is unavailable (${status} ${code ?? ''}): ${message}`, EXIT.usage)
  return new CliError(`${status}${code ? ` ${code}` : ''}: ${message}`, EXIT.failed)
}
