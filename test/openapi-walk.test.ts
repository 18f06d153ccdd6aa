/**
 * The whole OpenAPI document, walked (issue 12, items 4 and 13): every operation gets NUL, lone surrogates, 1.5
 * for integers and deep JSON in each parameter and body field, authenticated, and refuses each with a 4xx, never
 * a 5xx; every request body lists exactly the content types the server takes, and the example Swagger UI
 * pre-fills for it is accepted as shown.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { ADMIN_KEY, startTestServer, type TestServer } from './helpers.ts'
import { exampleOf, hostileRequestsOf, type Operation, operationsOf, type Schema, urlOf } from './openapi.ts'

let ollama: MockOllama
let server: TestServer
let doc: Schema
let operations: Operation[]
/** Existing records for `{id}`, by path prefix: examples are tried against real ones, not just a 404. */
let fixtures: Record<string, string>
const filled = (op: Operation) => {
  const prefix = Object.keys(fixtures).find((p) => op.path.startsWith(p))
  return urlOf(op, prefix ? { id: fixtures[prefix]! } : {})
}

beforeAll(async () => {
  ollama = await startMockOllama()
  // The desktop stays off (its routes still validate first): no Xvfb for a walk of the document.
  server = await startTestServer({ OLLAMA_HOST: ollama.url, VNC_ALLOWED_ROLES: 'user' })
  doc = (await server.api('/docs/json')).body
  operations = operationsOf(doc)
  const task = await server.api('/tasks', { method: 'POST', json: { prompt: 'Build a walk fixture' } })
  const session = await server.api('/api/sessions', { method: 'POST', json: { name: 'walk_fixture' } })
  fixtures = { '/tasks/': task.body.task_id, '/api/sessions/': session.body.session_id }
}, 60_000)
afterAll(async () => {
  await server?.stop()
  await ollama?.stop()
})

/** Sends one request with the admin key; a stream is not read past its status. */
async function send(method: string, url: string, body?: string, contentType = 'application/json') {
  const res = await fetch(server.url + url, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN_KEY}`,
      // What /mcp requires before it reads a body; every other route ignores it.
      accept: 'application/json, text/event-stream',
      ...(body !== undefined ? { 'content-type': contentType } : {}),
    },
    body,
    signal: AbortSignal.timeout(10_000),
  })
  const type = res.headers.get('content-type') ?? ''
  if (type.includes('json')) return { status: res.status, body: (await res.json()) as any }
  await res.body?.cancel()
  return { status: res.status, body: undefined as any }
}

describe('the document', () => {
  test('covers the API: tasks, sessions, keys, logs, desktop, agents', () => {
    const paths = new Set(operations.map((op) => op.path))
    for (const path of ['/tasks', '/tasks/{id}', '/api/sessions/{id}', '/api/keys/{id}', '/v1/agents'])
      expect(paths.has(path)).toBe(true)
    expect(operations.length).toBeGreaterThan(30)
  })
})

describe('hostile values in every field of every operation are 4xx, never 5xx (item 4)', () => {
  test('NUL, lone surrogates, 1.5 for integers, deep JSON', async () => {
    const outcomes: string[] = []
    let sent = 0
    for (const op of operations)
      for (const hostile of hostileRequestsOf(op)) {
        const res = await send(op.method, hostile.url, hostile.body)
        sent++
        if (res.status < 400 || res.status >= 500)
          outcomes.push(`${op.method} ${op.path} ${hostile.what} → ${res.status} ${JSON.stringify(res.body)}`)
        // /mcp answers in its own protocol's shape (JSON-RPC errors); every other route in Gantry's.
        else if (
          res.body?.jsonrpc !== '2.0' &&
          (typeof res.body?.error !== 'string' || typeof res.body?.message !== 'string')
        )
          outcomes.push(`${op.method} ${op.path} ${hostile.what} → ${res.status} without {error, message}`)
      }
    expect(outcomes).toEqual([])
    expect(sent).toBeGreaterThan(200)
  }, 120_000)
})

describe('what the document promises is what the server takes (item 13)', () => {
  const withBodies = () => operations.filter((op) => op.body)

  test('every request body is JSON only, and the other types are indeed refused with 415', async () => {
    expect(withBodies().length).toBeGreaterThan(8)
    for (const op of withBodies()) {
      expect(`${op.method} ${op.path}: ${Object.keys(op.body!).join(', ')}`).toBe(
        `${op.method} ${op.path}: application/json`,
      )
      const example = JSON.stringify(exampleOf(op.body!['application/json']!))
      for (const other of [
        'multipart/form-data; boundary=x',
        'text/plain',
        'application/x-www-form-urlencoded',
      ]) {
        const res = await send(op.method, urlOf(op), example, other)
        expect(`${op.method} ${op.path} as ${other}: ${res.status}`).toBe(
          `${op.method} ${op.path} as ${other}: 415`,
        )
      }
    }
  })

  test("each body's pre-filled example passes validation as shown", async () => {
    // A request past validation reaches the handler, which may still say 401, 403, 404 or 409 for its own reasons.
    const refusedAsInput = new Set([400, 413, 415, 422])
    const refused: string[] = []
    for (const op of withBodies()) {
      const example = exampleOf(op.body!['application/json']!)
      const res = await send(op.method, filled(op), JSON.stringify(example))
      if (refusedAsInput.has(res.status) || res.status >= 500)
        refused.push(
          `${op.method} ${op.path} ${JSON.stringify(example)} → ${res.status} ${res.body?.message}`,
        )
    }
    expect(refused).toEqual([])
  }, 60_000)

  test('numbers are documented as numbers: no "string or integer" a client would copy', () => {
    const loose = JSON.stringify(doc).match(/"format":"(integer|numeric)"/g)
    expect(loose).toBeNull()
  })

  test('query integers keep their bounds, and streams are documented as text/event-stream', () => {
    const list = operations.find((op) => op.method === 'GET' && op.path === '/tasks')!
    expect(list.parameters.find((p) => p.name === 'limit')!.schema).toMatchObject({
      type: 'integer',
      minimum: 1,
      maximum: 100,
    })
    const stream = doc.paths['/tasks/{id}/logs/stream'].get.responses['200'].content
    expect(Object.keys(stream)).toEqual(['text/event-stream'])
  })
})
