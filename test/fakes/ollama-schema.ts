// Generates a value that conforms to a JSON schema, so the simulated Ollama can
// answer `format` (structured output) requests the way a grammar-constrained
// model would: always parseable, always matching the schema's shape.
// Covers what zod-to-json-schema and hand-written schemas commonly emit; it is
// not a full validator (e.g. `pattern` is not honoured).

type Schema = Record<string, unknown>

// Recursive schemas ($ref cycles) stop expanding here rather than looping forever.
const MAX_DEPTH = 16

const STRING_FORMATS: Record<string, string> = {
  'date-time': '2025-01-01T00:00:00Z',
  date: '2025-01-01',
  time: '00:00:00',
  email: 'user@example.com',
  uri: 'https://example.com',
  url: 'https://example.com',
  uuid: '00000000-0000-4000-8000-000000000000',
  hostname: 'example.com',
  ipv4: '127.0.0.1',
}

const isSchema = (value: unknown): value is Schema =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

const num = (value: unknown): number | undefined => (typeof value === 'number' ? value : undefined)

/** Content Ollama would stream for a request's `format` ("json" or a schema object). */
export function jsonForFormat(format: unknown, fallbackText: string): string {
  const value = isSchema(format) ? sampleFromSchema(format) : { answer: fallbackText }
  return spacedJson(value)
}

/**
 * JSON with a space after each separator (`{ "a": 1, "b": [ 2 ] }`): still valid
 * JSON, but it splits into several whitespace-delimited stream tokens like real
 * model output does, instead of one giant token.
 */
export function spacedJson(value: unknown): string {
  // JSON.stringify escapes newlines inside strings, so every raw newline here is structural.
  return JSON.stringify(value, null, 1).replace(/\n\s*/g, ' ')
}

/** A value conforming to `schema`; `variant` varies the value for array items (uniqueItems). */
export function sampleFromSchema(
  schema: unknown,
  root: unknown = schema,
  depth = 0,
  hint = 'value',
  variant = 0,
): unknown {
  if (!isSchema(schema) || depth > MAX_DEPTH) return `simulated ${hint}`
  const next = (sub: unknown, subHint = hint, subVariant = variant) =>
    sampleFromSchema(sub, root, depth + 1, subHint, subVariant)

  if (typeof schema.$ref === 'string') return next(resolveRef(root, schema.$ref))
  if ('const' in schema) return schema.const
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[variant % schema.enum.length]
  const branches = schema.anyOf ?? schema.oneOf
  if (Array.isArray(branches) && branches.length > 0) {
    // Prefer a non-null branch: `nullable` fields should still carry data.
    return next(branches.find((b) => !(isSchema(b) && b.type === 'null')) ?? branches[0])
  }
  if (Array.isArray(schema.allOf)) return next(mergeAllOf(schema, root))

  switch (schemaType(schema)) {
    case 'object':
      return sampleObject(schema, next)
    case 'array':
      return sampleArray(schema, next)
    case 'integer':
      return sampleNumber(schema, true, variant)
    case 'number':
      return sampleNumber(schema, false, variant)
    case 'boolean':
      return variant % 2 === 0
    case 'null':
      return null
    default:
      return sampleString(schema, hint, variant)
  }
}

function schemaType(schema: Schema): string {
  const type = Array.isArray(schema.type) ? (schema.type.find((t) => t !== 'null') ?? 'null') : schema.type
  if (typeof type === 'string') return type
  if (isSchema(schema.properties)) return 'object'
  if (schema.items !== undefined || schema.prefixItems !== undefined) return 'array'
  return 'string'
}

function resolveRef(root: unknown, ref: string): unknown {
  if (!ref.startsWith('#')) return {}
  let node: unknown = root
  for (const raw of ref.slice(1).split('/').filter(Boolean)) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~')
    node = isSchema(node) ? node[key] : undefined
  }
  return node ?? {}
}

// allOf members are usually object fragments; merging their properties and
// required lists yields one object satisfying every member.
function mergeAllOf(schema: Schema, root: unknown): Schema {
  const merged: Schema = { ...schema, allOf: undefined, properties: {}, required: [] }
  for (const part of [schema, ...(schema.allOf as unknown[])]) {
    const resolved = isSchema(part) && typeof part.$ref === 'string' ? resolveRef(root, part.$ref) : part
    if (!isSchema(resolved)) continue
    for (const [key, value] of Object.entries(resolved)) {
      if (key === 'properties' && isSchema(value)) Object.assign(merged.properties as Schema, value)
      else if (key === 'required' && Array.isArray(value)) (merged.required as unknown[]).push(...value)
      else if (key !== 'allOf' && merged[key] === undefined) merged[key] = value
    }
  }
  return merged
}

type Next = (sub: unknown, hint?: string, variant?: number) => unknown

function sampleObject(schema: Schema, next: Next): Record<string, unknown> {
  const properties = isSchema(schema.properties) ? schema.properties : {}
  const result: Record<string, unknown> = {}
  // Optional properties are filled in too: more useful to consumers, still conformant.
  for (const [key, sub] of Object.entries(properties)) result[key] = next(sub, key)
  const required = Array.isArray(schema.required) ? schema.required : []
  for (const key of required) {
    if (typeof key === 'string' && !(key in result)) result[key] = next(schema.additionalProperties, key)
  }
  return result
}

function sampleArray(schema: Schema, next: Next): unknown[] {
  const prefix = Array.isArray(schema.prefixItems) ? schema.prefixItems : []
  const minItems = num(schema.minItems) ?? 0
  const maxItems = num(schema.maxItems) ?? Number.POSITIVE_INFINITY
  // At least one item so consumers iterating the array exercise their code paths.
  const count = Math.min(Math.max(minItems, prefix.length, 1), maxItems)
  return Array.from({ length: count }, (_, i) =>
    next(i < prefix.length ? prefix[i] : schema.items, 'item', i),
  )
}

function sampleNumber(schema: Schema, integer: boolean, variant: number): number {
  const step = integer ? 1 : 0.5
  // Draft-04 uses boolean exclusive flags; later drafts use numeric bounds.
  const exclusiveMin = schema.exclusiveMinimum === true ? num(schema.minimum) : num(schema.exclusiveMinimum)
  const exclusiveMax = schema.exclusiveMaximum === true ? num(schema.maximum) : num(schema.exclusiveMaximum)
  const minimum = schema.exclusiveMinimum === true ? undefined : num(schema.minimum)
  const maximum = schema.exclusiveMaximum === true ? undefined : num(schema.maximum)
  const low = minimum ?? (exclusiveMin !== undefined ? exclusiveMin + step : undefined)
  const high = maximum ?? (exclusiveMax !== undefined ? exclusiveMax - step : undefined)

  let value = (low ?? (high !== undefined ? Math.min(high, 1) : 1)) + variant * step
  if (high !== undefined) value = Math.min(value, high)
  const multipleOf = num(schema.multipleOf)
  if (multipleOf) value = Math.ceil(value / multipleOf) * multipleOf
  if (integer) value = Math.ceil(value)
  return value
}

function sampleString(schema: Schema, hint: string, variant: number): string {
  const format = typeof schema.format === 'string' ? STRING_FORMATS[schema.format] : undefined
  let value = format ?? `simulated ${hint}${variant > 0 ? ` ${variant + 1}` : ''}`
  const minLength = num(schema.minLength) ?? 0
  const maxLength = num(schema.maxLength)
  if (value.length < minLength) value = value.padEnd(minLength, 'x')
  if (maxLength !== undefined && value.length > maxLength) value = value.slice(0, maxLength)
  return value
}
