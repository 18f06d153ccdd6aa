import { t } from 'elysia'

/** The one error body every route answers with: `{error, message, details?, request_id?}`. */
export const ErrorBody = t.Object(
  {
    error: t.String({ description: 'Machine-readable code, e.g. not_found, validation_failed' }),
    message: t.String({ description: 'What went wrong, for a person' }),
    details: t.Optional(t.Any({ description: 'Field paths for validation errors, limits, valid values…' })),
    request_id: t.Optional(t.String()),
  },
  { $id: '#/components/schemas/Error', description: 'Error' },
)

export interface ErrorPayload {
  error: string
  message: string
  details?: unknown
  request_id?: string
}

/** An error with an HTTP status and a stable code; thrown by services, mapped by the global handler. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    readonly headers?: Record<string, string>,
  ) {
    super(message)
    this.name = 'HttpError'
  }

  toJSON(): ErrorPayload {
    return this.details === undefined
      ? { error: this.code, message: this.message }
      : { error: this.code, message: this.message, details: this.details }
  }
}

export const BadRequest = (message: string, details?: unknown) =>
  new HttpError(400, 'bad_request', message, details)
export const Unauthorized = (message = 'Send an API key as "Authorization: Bearer <key>" or log in.') =>
  new HttpError(401, 'unauthorized', message, undefined, { 'www-authenticate': 'Bearer' })
export const Forbidden = (message = 'You do not have permission for this.') =>
  new HttpError(403, 'forbidden', message)
export const NotFound = (what: string) => new HttpError(404, 'not_found', `${what} not found`)
export const Conflict = (message: string, details?: unknown) =>
  new HttpError(409, 'conflict', message, details)
export const Unprocessable = (message: string, details?: unknown) =>
  new HttpError(422, 'validation_failed', message, details)
export const TooMany = (message: string, retryAfterSeconds: number) =>
  new HttpError(
    429,
    'too_many_requests',
    message,
    { retry_after_seconds: retryAfterSeconds },
    {
      'retry-after': String(retryAfterSeconds),
    },
  )
export const ServiceUnavailable = (code: string, message: string) => new HttpError(503, code, message)

/** The standard error responses a route declares so that Swagger shows them. */
export const errorResponses = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
  413: ErrorBody,
  415: ErrorBody,
  422: ErrorBody,
  429: ErrorBody,
  503: ErrorBody,
} as const

export function jsonError(status: number, payload: ErrorPayload, headers?: Record<string, string>): Response {
  return new Response(JSON.stringify(payload), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  })
}
