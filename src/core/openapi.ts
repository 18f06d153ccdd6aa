/**
 * The OpenAPI document as served at /docs/json: what @elysiajs/swagger generates, corrected to say only what the
 * server accepts. The generator lists every body and response as JSON, multipart/form-data and text/plain (the
 * HTTP layer answers 415 to all but JSON), and documents Elysia's lenient t.Integer/t.Numeric as "a string or a
 * number", so Swagger's pre-filled example sent `"max_iterations": "string"`.
 */
import { type AnyElysia, Elysia } from 'elysia'

type Json = Record<string, any>

const SSE = 'text/event-stream'

/** `anyOf: [{type: string, format: integer|numeric}, {type: integer|number}]` becomes the numeric branch. */
function numericOf(schema: Json): Json | undefined {
  const anyOf = schema.anyOf
  if (!Array.isArray(anyOf) || anyOf.length !== 2) return undefined
  const loose = anyOf.findIndex(
    (s: Json) => s?.type === 'string' && (s.format === 'integer' || s.format === 'numeric'),
  )
  if (loose === -1) return undefined
  const strict = anyOf[1 - loose] as Json
  if (strict?.type !== 'integer' && strict?.type !== 'number') return undefined
  const { anyOf: _, ...outer } = schema
  return { ...outer, ...strict }
}

function strictNumbers(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(strictNumbers)
  if (value === null || typeof value !== 'object') return value
  const numeric = numericOf(value as Json)
  const source = numeric ?? (value as Json)
  const out: Json = {}
  for (const [key, child] of Object.entries(source)) out[key] = strictNumbers(child)
  return out
}

/** A response declared as `t.String({ description: 'text/event-stream' })` is a stream, not JSON. */
function responseContent(content: Json): Json {
  const json = content['application/json']
  if (!json) return content
  if (json.schema?.description === SSE) return { [SSE]: { schema: { type: 'string', description: SSE } } }
  return { 'application/json': json }
}

export function acceptedOnly(generated: Json): Json {
  const doc = strictNumbers(generated) as Json
  for (const operations of Object.values(doc.paths ?? {}) as Json[])
    for (const operation of Object.values(operations) as Json[]) {
      const body = operation.requestBody?.content
      if (body)
        operation.requestBody.content = body['application/json']
          ? { 'application/json': body['application/json'] }
          : {}
      for (const response of Object.values(operation.responses ?? {}) as Json[])
        if (response.content) response.content = responseContent(response.content)
    }
  return doc
}

/** Where the generator serves its own, uncorrected document (hidden); /docs/json serves the corrected one. */
export const GENERATED_SPEC_PATH = '/docs/_generated.json'

/**
 * The swagger plugin (with `specPath: GENERATED_SPEC_PATH`) plus `GET /docs/json`, the corrected document. The
 * generator's handler reads the app's routes when called, so calling it here sees every plugin's routes.
 */
export function servedDocs<const Generator extends AnyElysia>(generator: Generator) {
  const route = generator.routes.find((r) => r.path === GENERATED_SPEC_PATH)
  if (!route) throw new Error(`the swagger plugin must serve its document at ${GENERATED_SPEC_PATH}`)
  const generate = route.handler as () => Json
  return new Elysia({ name: 'gantry:openapi' })
    .use(generator)
    .get('/docs/json', () => acceptedOnly(generate()), { detail: { hide: true } })
}
