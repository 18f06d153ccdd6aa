/**
 * CSRF (issue 12, item 8): a request that changes something and is authenticated by the session cookie must come
 * from an allowed origin. Walks every non-GET operation of the OpenAPI document: from a foreign origin with the
 * cookie → 403 forbidden_origin and nothing changed; from the server's own pages → allowed; with an API key
 * (Bearer) → allowed from anywhere.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { ADMIN_KEY, startTestServer, type TestServer } from './helpers.ts'
import { exampleOf, type Operation, operationsOf, urlOf } from './openapi.ts'

const FOREIGN = 'http://127.0.0.1:9999'

let ollama: MockOllama
let server: TestServer
let changing: Operation[]
let taskId: string
let sessionId: string

async function login(): Promise<string> {
  const res = await server.api('/api/auth/login', { method: 'POST', key: null, json: { api_key: ADMIN_KEY } })
  expect(res.status).toBe(200)
  return res.headers.get('set-cookie')!.split(';')[0]!
}

beforeAll(async () => {
  ollama = await startMockOllama()
  // A model that never finishes keeps the fixture task running, so a cancel would show.
  ollama.enqueue({ content: 'thinking about it', hang: true })
  server = await startTestServer({ OLLAMA_HOST: ollama.url, VNC_ALLOWED_ROLES: 'user' })
  const doc = (await server.api('/docs/json')).body
  changing = operationsOf(doc).filter((op) => !['GET', 'HEAD', 'OPTIONS'].includes(op.method))
  taskId = (await server.api('/tasks', { method: 'POST', json: { prompt: 'Build a CSRF fixture' } })).body
    .task_id
  sessionId = (await server.api('/api/sessions', { method: 'POST', json: { name: 'csrf_fixture' } })).body
    .session_id
}, 60_000)
afterAll(async () => {
  await server?.stop()
  await ollama?.stop()
})

const fill = (op: Operation) =>
  urlOf(
    op,
    op.path.startsWith('/tasks/')
      ? { id: taskId }
      : op.path.startsWith('/api/sessions/')
        ? { id: sessionId }
        : {},
  )

async function send(op: Operation, headers: Record<string, string>, body?: string) {
  const res = await fetch(server.url + fill(op), {
    method: op.method,
    headers: { accept: 'application/json, text/event-stream', ...headers },
    body,
    signal: AbortSignal.timeout(10_000),
  })
  const json = res.headers.get('content-type')?.includes('json') ? await res.json() : undefined
  if (!json) await res.body?.cancel()
  return { status: res.status, body: json as any }
}

const exampleBody = (op: Operation) =>
  op.body ? JSON.stringify(exampleOf(op.body['application/json']!)) : undefined

describe('a cookie from another origin changes nothing', () => {
  test('the issue’s five routes, as an HTML form would post them', async () => {
    const cookie = await login()
    const form = { cookie, origin: FOREIGN, 'content-type': 'application/x-www-form-urlencoded' }
    for (const path of [
      `/tasks/${taskId}/cancel`,
      `/api/sessions/${sessionId}/cancel`,
      '/api/vnc/disconnect',
      '/api/auth/logout',
      '/api/ws-ticket',
    ]) {
      const res = await fetch(server.url + path, { method: 'POST', headers: form, body: 'x=1' })
      expect(`${path} ${res.status}`).toBe(`${path} 403`)
      expect((await res.json()).error).toBe('forbidden_origin')
    }
    // Nothing changed: the task runs on, the cookie still works.
    expect((await server.api(`/tasks/${taskId}`)).body.status).not.toMatch(/cancel/)
    expect((await server.api('/api/me', { key: null, headers: { cookie } })).status).toBe(200)
  })

  test('every state-changing operation of the document: 403 from a foreign origin, with form or JSON', async () => {
    const cookie = await login()
    expect(changing.length).toBeGreaterThan(15)
    const wrong: string[] = []
    for (const op of changing)
      for (const headers of <Record<string, string>[]>[
        { cookie, origin: FOREIGN, 'content-type': 'application/x-www-form-urlencoded' },
        { cookie, origin: FOREIGN, 'content-type': 'application/json' },
        { cookie, origin: 'null', 'content-type': 'application/json' },
        // No Origin and a cross-site fetch: what a browser that omits Origin would say.
        { cookie, 'sec-fetch-site': 'cross-site', 'content-type': 'application/json' },
        // Neither header: no page of ours sent it.
        { cookie, 'content-type': 'application/json' },
      ]) {
        const res = await send(op, headers, exampleBody(op) ?? '{}')
        if (res.status !== 403 || res.body?.error !== 'forbidden_origin')
          wrong.push(`${op.method} ${op.path} ${JSON.stringify(headers)} → ${res.status}`)
      }
    expect(wrong).toEqual([])
    expect((await server.api(`/tasks/${taskId}`)).body.status).not.toMatch(/cancel/)
    expect((await server.api(`/api/sessions/${sessionId}`)).status).toBe(200)
    expect((await server.api('/api/me', { key: null, headers: { cookie } })).status).toBe(200)
  })
})

describe('the server’s own pages and API keys are unaffected', () => {
  test('same origin (Origin, or Sec-Fetch-Site: same-origin) with the cookie → allowed', async () => {
    const cookie = await login()
    const wrong: string[] = []
    // Logout last: it ends the cookie the others use.
    const ordered = [...changing].sort(
      (a, b) => Number(a.path === '/api/auth/logout') - Number(b.path === '/api/auth/logout'),
    )
    for (const op of ordered.filter((op) => !op.path.includes('{') || op.path.endsWith('/cancel'))) {
      const headers: Record<string, string> =
        op.path === '/mcp'
          ? { cookie, origin: server.url, 'content-type': 'application/json' }
          : { cookie, 'sec-fetch-site': 'same-origin', 'content-type': 'application/json' }
      for (const h of [{ ...headers, origin: server.url }, headers]) {
        if (op.path === '/api/auth/logout' && h === headers) continue
        const res = await send(op, h, exampleBody(op))
        if (res.body?.error === 'forbidden_origin' || res.status === 415)
          wrong.push(`${op.method} ${op.path} ${JSON.stringify(h)} → ${res.status} ${res.body?.error}`)
      }
    }
    expect(wrong).toEqual([])
  }, 60_000)

  test('the cancel goes through from our own origin', async () => {
    const cookie = await login()
    ollama.enqueue({ content: 'still thinking', hang: true })
    const task = (await server.api('/tasks', { method: 'POST', json: { prompt: 'Build a second fixture' } }))
      .body
    const res = await fetch(`${server.url}/tasks/${task.task_id}/cancel`, {
      method: 'POST',
      headers: { cookie, origin: server.url },
    })
    // 200 when it was still queued (cancelled at once), 202 when a runner is stopping it.
    expect([200, 202]).toContain(res.status)
    expect((await res.json()).status).toMatch(/^cancel/)
  })

  test('Bearer from any origin → allowed (no cookie involved)', async () => {
    const wrong: string[] = []
    // /mcp checks Origin for every caller itself (the MCP transport's DNS-rebinding rule), so it is left out.
    for (const op of changing.filter((op) => op.path !== '/mcp' && !op.path.startsWith('/api/auth/'))) {
      const res = await send(
        op,
        { authorization: `Bearer ${ADMIN_KEY}`, origin: FOREIGN, 'content-type': 'application/json' },
        exampleBody(op),
      )
      if (res.body?.error === 'forbidden_origin') wrong.push(`${op.method} ${op.path} → ${res.status}`)
    }
    expect(wrong).toEqual([])
  }, 60_000)
})
