/**
 * Walking the served OpenAPI document (/docs/json) for the edge tests: every operation with concrete URLs,
 * the example Swagger UI would pre-fill for a body, and hostile variants of every parameter and body field.
 */

export type Schema = Record<string, any>

export interface Operation {
  method: string
  /** The templated path, e.g. `/tasks/{id}`. */
  path: string
  parameters: { in: 'path' | 'query' | 'header'; name: string; schema: Schema; required?: boolean }[]
  /** The requestBody's content map, when the operation takes a body. */
  body?: Record<string, { schema?: Schema; example?: unknown }>
}

export function operationsOf(doc: Schema): Operation[] {
  const ops: Operation[] = []
  for (const [path, methods] of Object.entries(doc.paths as Record<string, Schema>))
    for (const [method, op] of Object.entries(methods as Record<string, Schema>))
      ops.push({
        method: method.toUpperCase(),
        path,
        parameters: op.parameters ?? [],
        body: op.requestBody?.content,
      })
  return ops
}

/** The operation's URL with each path parameter filled (by `fill`, else a value that matches no record). */
export function urlOf(op: Operation, fill: Record<string, string> = {}, query = ''): string {
  const path = op.path.replace(/\{(\w+)\}/g, (_, name: string) => fill[name] ?? 'walk-none')
  return query ? `${path}?${query}` : path
}

const isInteger = (s: Schema) => s.type === 'integer' || (s.type === 'number' && s.multipleOf === 1)

/**
 * The sample Swagger UI builds from a schema when no example is given: `example`, else `default`, else the first
 * enum value or anyOf branch, else by type (strings "string", numbers clamped to their minimum, every property
 * of an object, one item of an array).
 */
export function sampleOf(schema: Schema | undefined, examples = true): unknown {
  if (!schema) return undefined
  if (examples && 'example' in schema) return schema.example
  if ('default' in schema) return schema.default
  if ('const' in schema) return schema.const
  if (Array.isArray(schema.enum)) return schema.enum[0]
  const branch = schema.anyOf ?? schema.oneOf
  if (Array.isArray(branch)) return sampleOf(branch[0], examples)
  switch (schema.type) {
    case 'string':
      if (schema.format === 'date-time') return new Date(0).toISOString()
      return 'string'
    case 'integer':
    case 'number':
      return Math.max(
        0,
        schema.minimum ?? 0,
        schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : 0,
      )
    case 'boolean':
      return true
    case 'array':
      return [sampleOf(schema.items ?? {}, examples)]
    case 'object': {
      const out: Record<string, unknown> = {}
      for (const [key, child] of Object.entries((schema.properties ?? {}) as Record<string, Schema>))
        out[key] = sampleOf(child, examples)
      const extra = schema.additionalProperties
      if (extra && typeof extra === 'object' && !schema.properties)
        for (let i = 1; i <= 3; i++) out[`additionalProp${i}`] = sampleOf(extra, examples)
      return out
    }
  }
  return {}
}

/** The example a person sees in Swagger UI for this body: the media type's, else the schema's, else a sample. */
export function exampleOf(content: { schema?: Schema; example?: unknown }): unknown {
  return 'example' in content ? content.example : sampleOf(content.schema)
}

export interface Hostile {
  what: string
  url: string
  body?: string
}

const NUL = 'a\u0000b'
const LONE = 'x\ud800y'
const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`

/** Every property path of a sample object whose schema is a string or an integer. */
function fieldsOf(schema: Schema | undefined, path: string[] = []): { path: string[]; schema: Schema }[] {
  if (!schema) return []
  const found: { path: string[]; schema: Schema }[] = []
  const branch = schema.anyOf ?? schema.oneOf
  if (Array.isArray(branch))
    return fieldsOf(branch.find((b: Schema) => b.type === 'object') ?? branch[0], path)
  if (schema.type === 'object')
    for (const [key, child] of Object.entries((schema.properties ?? {}) as Record<string, Schema>))
      found.push(...fieldsOf(child, [...path, key]))
  else if (schema.type === 'array') found.push(...fieldsOf(schema.items, [...path, '0']))
  else if (path.length) found.push({ path, schema })
  return found
}

function withValue(sample: unknown, path: string[], value: unknown): unknown {
  const copy = structuredClone(sample) as any
  let at = copy
  for (const key of path.slice(0, -1)) at = at[key]
  at[path.at(-1)!] = value
  return copy
}

/**
 * Hostile variants of one operation: NUL and a lone surrogate in each path and query parameter, 1.5 for each
 * integer, and for bodies the same in each field plus deep JSON (as the body, and in each field). Every one of
 * them must be refused with a 4xx.
 */
export function hostileRequestsOf(op: Operation): Hostile[] {
  const out: Hostile[] = []
  const validQuery = op.parameters
    .filter((p) => p.in === 'query' && p.required)
    .map((p) => `${p.name}=${encodeURIComponent(String(sampleOf(p.schema)))}`)
  for (const p of op.parameters) {
    if (p.in === 'path') {
      out.push({ what: `path ${p.name} NUL`, url: urlOf(op, { [p.name]: encodeURIComponent(NUL) }) })
      out.push({ what: `path ${p.name} lone surrogate`, url: urlOf(op, { [p.name]: 'x%ED%A0%80y' }) })
    }
    if (p.in === 'query') {
      const others = validQuery.filter((q) => !q.startsWith(`${p.name}=`))
      const q = (v: string) => [...others, `${p.name}=${v}`].join('&')
      out.push({ what: `query ${p.name} NUL`, url: urlOf(op, {}, q(encodeURIComponent(NUL))) })
      out.push({ what: `query ${p.name} lone surrogate`, url: urlOf(op, {}, q('x%ED%A0%80y')) })
      if (isInteger(p.schema ?? {})) out.push({ what: `query ${p.name} 1.5`, url: urlOf(op, {}, q('1.5')) })
    }
  }
  if (op.method === 'GET' || op.method === 'HEAD') return out
  const url = urlOf(op)
  out.push({ what: 'body nested 100,000 deep', url, body: `{"x": ${deep(100_000)}}` })
  const schema = op.body?.['application/json']?.schema
  // Every field present (not the documented example, which leaves optional ones out), each in turn made hostile.
  const sample = schema ? sampleOf(schema, false) : {}
  for (const field of fieldsOf(schema)) {
    const name = field.path.join('/')
    const raw = (value: unknown) => JSON.stringify(withValue(sample, field.path, value))
    out.push({ what: `body ${name} NUL`, url, body: raw(NUL) })
    // JSON.stringify writes a lone surrogate as the escape \ud800, as a hostile client would send it.
    out.push({ what: `body ${name} lone surrogate`, url, body: raw(LONE) })
    if (isInteger(field.schema)) out.push({ what: `body ${name} 1.5`, url, body: raw(1.5) })
    const marker = '"__deep__"'
    out.push({
      what: `body ${name} nested deep`,
      url,
      body: raw('__deep__').replace(marker, deep(100_000)),
    })
  }
  if (!schema) out.push({ what: 'body with a NUL string', url, body: JSON.stringify({ x: NUL }) })
  return out
}
