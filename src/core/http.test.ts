import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'

let server: TestServer
beforeAll(async () => {
  server = await startTestServer({ BODY_LIMIT_BYTES: '2048', CORS_ORIGINS: 'https://console.lan' })
}, 60_000)
afterAll(() => server.stop())

describe('errors map to {error, message, details?}', () => {
  test('unknown route → 404 JSON', async () => {
    const res = await server.api('/no/such/route')
    expect(res.status).toBe(404)
    expect(res.body.error).toBe('not_found')
    expect(res.body.message).toContain('/no/such/route')
    expect(res.headers.get('content-type')).toContain('application/json')
  })

  test('malformed JSON → 400', async () => {
    const res = await server.api('/api/keys', {
      method: 'POST',
      body: '{"user": ',
      headers: { 'content-type': 'application/json' },
    })
    expect(res.status).toBe(400)
    expect(res.body.error).toBe('invalid_json')
  })

  test('validation → 422 with field paths', async () => {
    const res = await server.api('/api/keys', { method: 'POST', json: { user: '', role: 'king' } })
    expect(res.status).toBe(422)
    expect(res.body.error).toBe('validation_failed')
    const paths = res.body.details.map((d: { path: string }) => d.path)
    expect(paths.some((p: string) => p.startsWith('body/'))).toBe(true)
  })

  test('unknown fields are refused where a body is closed', async () => {
    const res = await server.api('/api/keys', { method: 'POST', json: { user: 'x', admin: true } })
    expect(res.status).toBe(422)
  })

  test('wrong content type → 415', async () => {
    const res = await server.api('/api/keys', {
      method: 'POST',
      body: 'user=x',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    })
    expect(res.status).toBe(415)
    expect(res.body.error).toBe('unsupported_media_type')
  })

  test('body over the limit → 413 naming the limit', async () => {
    const res = await server.api('/api/keys', { method: 'POST', json: { user: 'x'.repeat(5000) } })
    expect(res.status).toBe(413)
    expect(res.body.error).toBe('payload_too_large')
    expect(res.body.details.limit_bytes).toBe(2048)
  })

  test('missing key → 401 with WWW-Authenticate', async () => {
    const res = await server.api('/api/me', { key: null })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe('Bearer')
  })
})

describe('request ids and logs', () => {
  test('x-request-id is accepted and returned; generated otherwise', async () => {
    const given = await server.api('/health', { headers: { 'x-request-id': 'trace-abc.123' } })
    expect(given.headers.get('x-request-id')).toBe('trace-abc.123')
    const made = await server.api('/health', { headers: { 'x-request-id': 'bad id with spaces' } })
    expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f]{8}-[0-9a-z]+$/)
  })

  test('one line per request: method, path without query, status, duration', async () => {
    await server.api('/api/me?token=supersecret', { headers: { 'x-request-id': 'line-check-1' } })
    const line = await waitFor(
      () => server.log.records().find((r) => r.reqId === 'line-check-1'),
      2000,
      'the request line',
    )
    expect(line).toMatchObject({ method: 'GET', path: '/api/me', status: 200, msg: 'request' })
    expect(typeof line!.ms).toBe('number')
  })

  test('keys, cookies and Authorization never reach the log', async () => {
    await server.api('/api/me', {
      headers: { cookie: 'gantry_session=cookie-secret-value-123456789' },
      key: null,
    })
    await server.api('/api/auth/login', {
      method: 'POST',
      json: { api_key: 'gk_deadbeef_wrong-key-should-not-log' },
      key: null,
    })
    const login = await server.api('/api/auth/login', {
      method: 'POST',
      json: { api_key: ADMIN_KEY },
      key: null,
    })
    expect(login.status).toBe(200)
    const raw = server.log.raw()
    expect(raw).not.toContain(ADMIN_KEY)
    expect(raw).not.toContain('cookie-secret-value')
    expect(raw).not.toContain('wrong-key-should-not-log')
    expect(raw).not.toContain(login.headers.get('set-cookie')!.split(';')[0]!.split('=')[1]!)
  })
})

describe('CORS', () => {
  test('allowed origin gets credentials headers; preflight answers 204', async () => {
    const res = await fetch(`${server.url}/api/me`, {
      method: 'OPTIONS',
      headers: { origin: 'https://console.lan', 'access-control-request-method': 'GET' },
    })
    expect(res.status).toBe(204)
    expect(res.headers.get('access-control-allow-origin')).toBe('https://console.lan')
  })

  test('foreign origin gets no CORS headers', async () => {
    const res = await fetch(`${server.url}/health`, { headers: { origin: 'https://evil.example' } })
    expect(res.headers.get('access-control-allow-origin')).toBeNull()
  })
})

describe('core routes', () => {
  test('GET / is JSON for API clients and HTML for browsers', async () => {
    const json = await server.api('/', { key: null })
    expect(json.body).toMatchObject({ name: 'gantry', status: 'running' })
    expect(json.body.endpoints.docs).toBe('/docs')
    const html = await fetch(`${server.url}/`, { headers: { accept: 'text/html' } })
    expect(html.headers.get('content-type')).toContain('text/html')
    expect(await html.text()).toContain('<title>Gantry</title>')
  })

  test('/ready reports the database and Ollama', async () => {
    const res = await server.api('/ready', { key: null })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ status: 'ready', database: 'ok', ollama: 'down' })
  })

  test('/docs serves Swagger UI from the installed package and /docs/json the OpenAPI', async () => {
    const page = await fetch(`${server.url}/docs`)
    expect(await page.text()).toContain('/docs/assets/swagger-ui-bundle.js')
    const asset = await fetch(`${server.url}/docs/assets/swagger-ui-bundle.js`)
    expect(asset.status).toBe(200)
    expect((await asset.arrayBuffer()).byteLength).toBeGreaterThan(100_000)
    expect((await fetch(`${server.url}/docs/assets/..%2Fpackage.json`)).status).toBe(404)
    const spec = (await server.api('/docs/json', { key: null })).body
    expect(spec.components.securitySchemes.bearerAuth.scheme).toBe('bearer')
    for (const path of ['/health', '/ready', '/api/auth/login', '/api/auth/logout', '/api/me', '/api/keys'])
      expect(Object.keys(spec.paths)).toContain(path)
    for (const [path, ops] of Object.entries<any>(spec.paths))
      for (const [method, op] of Object.entries<any>(ops)) {
        expect(op.tags?.length, `${method} ${path} is tagged`).toBeGreaterThan(0)
        expect(op.summary ?? op.description, `${method} ${path} is described`).toBeTruthy()
      }
  })
})
