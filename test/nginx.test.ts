/**
 * The project's own nginx.conf in front of a real Gantry, through a real nginx. Only what a test machine lacks is
 * swapped (the upstream address, the listen ports, the certificate and log paths); every replacement must hit, so
 * a changed nginx.conf cannot silently escape these checks. Covered: TLS and the HTTP redirect, request ids,
 * the public origin in the URLs Gantry hands out, WebSocket upgrades with the browser's Origin intact, unbuffered
 * SSE, the Secure cookie, rate limits, body limits, CSRF behind the proxy, and nginx's own errors (413, 429, 502,
 * and what the runtime would drop or answer in text: unknown methods, oversized headers, broken chunking) in
 * Gantry's JSON shape.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { rmSync } from 'node:fs'
import { connect as tlsConnect } from 'node:tls'
import { openSse } from '../plugins/logs-stream/testing.ts'
import { rfbHandshake } from '../plugins/vnc/rfb-client.ts'
import { connectWs } from '../plugins/websocket/testing.ts'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { ADMIN_KEY, startTestServer, type TestServer, tempDir, waitFor } from './helpers.ts'
import { HAVE_NGINX, type RunningNginx, startNginx } from './nginx-harness.ts'

describe.skipIf(!HAVE_NGINX)('behind nginx', () => {
  const dir = tempDir('gantry-nginx-')
  let ollama: MockOllama
  let server: TestServer
  let nginx: RunningNginx | undefined
  let http = ''
  let https = ''
  const tls = () => ({ ca: nginx!.ca })
  const get = (path: string, init: RequestInit = {}) => nginx!.get(path, init)
  const bearer = { authorization: `Bearer ${ADMIN_KEY}` }

  beforeAll(async () => {
    ollama = await startMockOllama()
    server = await startTestServer({
      OLLAMA_HOST: ollama.url,
      OLLAMA_MODEL: 'llama3.2',
      CODE_EXECUTION: 'off',
    })
    nginx = await startNginx(dir, [server.running.server.port!])
    http = nginx.http
    https = nginx.https
  }, 60_000)

  afterAll(async () => {
    await nginx?.stop()
    await server?.stop()
    await ollama?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  test('passes nginx -t', () => {
    const check = nginx!.check()
    expect(check.stderr).toContain('syntax is ok')
    expect(check.exitCode).toBe(0)
  })

  test('plain HTTP is redirected to HTTPS; HTTPS reaches Gantry with HSTS and nginx’s request id', async () => {
    const plain = await fetch(`${http}/health`, { redirect: 'manual' })
    expect(plain.status).toBe(301)
    expect(plain.headers.get('location')).toBe('https://127.0.0.1/health')

    const res = await get('/health')
    expect(res.status).toBe(200)
    expect((await res.json()).status).toBe('ok')
    expect(res.headers.get('strict-transport-security')).toContain('max-age=')
    // nginx sets X-Request-Id to its own $request_id; Gantry adopts and returns it, so both logs share one id.
    const id = res.headers.get('x-request-id') ?? ''
    expect(id).toMatch(/^[0-9a-f]{32}$/)
    expect(nginx!.accessLog()).toContain('GET /health')
    await waitFor(
      () => server.log.records().some((r) => r.reqId === id && r.path === '/health'),
      2000,
      'the request line',
    )
  })

  test('task URLs name the public origin; the WebSocket upgrades through nginx with the browser’s Origin', async () => {
    const created = await get('/tasks', {
      method: 'POST',
      headers: { ...bearer, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Build an email validator' }),
    })
    expect(created.status).toBe(201)
    const task = await created.json()
    const wsOrigin = https.replace('https:', 'wss:')
    expect(task.websocket_url).toBe(`${wsOrigin}/ws/${task.task_id}`)
    expect(task.events_url).toBe(`${https}/api/streams/${task.task_id}/events`)

    // A browser on the public origin: its Origin header must match what Gantry believes its origin is.
    const client = await connectWs(`${task.websocket_url}?since=0`, { ...bearer, origin: https }, tls())
    const end = await client.next((f) => f.type === 'TASK_FAILED' || f.type === 'TASK_COMPLETE', 20_000)
    expect(end.task_id ?? end.stream_id ?? task.task_id).toBe(task.task_id)
    expect(client.frames[0].seq).toBe(1)
    client.ws.close()

    // Another site's page is still refused: the proxy does not launder the Origin check.
    await expect(
      connectWs(`${task.websocket_url}?since=0`, { ...bearer, origin: 'https://evil.example' }, tls()),
    ).rejects.toThrow()
  }, 30_000)

  test('SSE passes through unbuffered: a record reaches the open stream while it stays open', async () => {
    const stream = await openSse(`${https}/api/logs/stream`, bearer, tls())
    expect(stream.status).toBe(200)
    const probe = `/nginx-sse-probe-${crypto.randomUUID()}`
    // Requested after the stream opened; its request log line must arrive before the stream ends.
    expect((await get(probe, { headers: bearer })).status).toBe(404)
    const seen = await stream.next((m) => JSON.parse(m.data).path === probe, 5000)
    expect(JSON.parse(seen.data)).toMatchObject({ msg: 'request', status: 404 })
    stream.close()
  })

  test('login sets a Secure cookie behind TLS; a burst of logins gets 429 in JSON from nginx', async () => {
    const login = await get('/api/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ api_key: ADMIN_KEY }),
    })
    expect(login.status).toBe(200)
    const cookie = login.headers.get('set-cookie') ?? ''
    expect(cookie).toContain('Secure')
    expect(cookie).toContain('HttpOnly')

    const answers: { status: number; body: any }[] = []
    for (let i = 0; i < 8; i++) {
      const res = await get('/api/auth/login', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ api_key: 'gk_wrong' }),
      })
      expect(res.headers.get('content-type')).toContain('application/json')
      answers.push({ status: res.status, body: await res.json() })
    }
    const statuses = answers.map((a) => a.status)
    // 5 per minute with a burst of 5: the first few reach Gantry (401), the rest stop at nginx (429).
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401])
    expect(statuses.at(-1)).toBe(429)
    for (const a of answers) {
      expect(a.body.error).toBe(a.status === 401 ? 'invalid_api_key' : 'too_many_requests')
      expect(typeof a.body.message).toBe('string')
    }
  })

  test('a body over the proxy limit gets 413 in JSON', async () => {
    const res = await get('/tasks', {
      method: 'POST',
      headers: { ...bearer, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'x'.repeat(2 * 1024 * 1024 + 1) }),
    })
    expect(res.status).toBe(413)
    expect((await res.json()).error).toBe('payload_too_large')
  })

  /** One HTTP/1.1 request over TLS, written byte for byte (what fetch refuses to send), read to the close. */
  const rawHttps = (head: string, body = ''): Promise<{ status: number; head: string; json: any }> =>
    new Promise((resolve, reject) => {
      const port = Number(new URL(https).port)
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: nginx!.ca }, () => socket.end(head + body))
      let text = ''
      socket.on('data', (d) => {
        text += d
      })
      socket.on('error', reject)
      socket.on('close', () => {
        const [top = '', rest = ''] = text.split('\r\n\r\n')
        let json: any
        try {
          json = JSON.parse(rest)
        } catch {
          json = rest
        }
        resolve({ status: Number(top.split(' ')[1]), head: top, json })
      })
    })

  test('nginx’s refusals of requests Gantry’s runtime would drop or answer in text are JSON too', async () => {
    // An unknown method: the runtime closes the connection unanswered; nginx says 405.
    const foo = await rawHttps('FOO /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
    expect(foo.status).toBe(405)
    expect(foo.head.toLowerCase()).toContain('allow: get, head, post, put, patch, delete, options')
    expect(foo.json).toMatchObject({ error: 'method_not_allowed' })
    // Headers over the proxy's limits: 431 from nginx before the runtime's plain-text 431.
    const oneLong = await get('/health', { headers: { 'x-long': 'a'.repeat(5000) } })
    expect(oneLong.status).toBe(431)
    expect(await oneLong.json()).toMatchObject({ error: 'headers_too_large' })
    const many = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`x-part-${i}`, 'a'.repeat(3500)]))
    const tooMany = await get('/health', { headers: many })
    expect(tooMany.status).toBe(431)
    expect((await tooMany.json()).error).toBe('headers_too_large')
    // Under the limits, the request reaches Gantry.
    expect((await get('/health', { headers: { 'x-long': 'a'.repeat(3500) } })).status).toBe(200)
    // A malformed chunked body: 400 in JSON from nginx.
    const chunked = await rawHttps(
      'POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n',
      'zz\r\nnot a chunk\r\n0\r\n\r\n',
    )
    expect(chunked.status).toBe(400)
    expect(chunked.json).toMatchObject({ error: 'bad_request' })
    // A request line nginx cannot parse at all.
    const garbage = await rawHttps(
      'GET /health HTTP/1.1 extra\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n',
    )
    expect(garbage.status).toBe(400)
    expect(garbage.json).toMatchObject({ error: 'bad_request' })
    // The URL over the proxy's limit.
    const long = await get(`/health?q=${'a'.repeat(5000)}`)
    expect(long.status).toBe(414)
    expect(await long.json()).toMatchObject({ error: 'uri_too_long' })
  })

  test('Gantry’s own refusals pass through untouched: deep JSON, and a cookie from another origin', async () => {
    const deep = await get('/tasks', {
      method: 'POST',
      headers: { ...bearer, 'content-type': 'application/json' },
      body: `{"prompt": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`,
    })
    expect(deep.status).toBe(400)
    expect((await deep.json()).error).toBe('too_deep')
    // Logged in past nginx (its login rate limit is spent above); the cookie is the same either way.
    const login = await server.api('/api/auth/login', {
      method: 'POST',
      key: null,
      json: { api_key: ADMIN_KEY },
    })
    expect(login.status).toBe(200)
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0]!
    // The public origin (https, nginx's port) is this server's own; the upstream's http://127.0.0.1:<port> is not.
    const own = await get('/api/ws-ticket', { method: 'POST', headers: { cookie, origin: https } })
    expect(own.status).toBe(200)
    for (const origin of ['https://evil.example', server.url]) {
      const foreign = await get('/api/ws-ticket', { method: 'POST', headers: { cookie, origin } })
      expect(foreign.status).toBe(403)
      expect((await foreign.json()).error).toBe('forbidden_origin')
    }
  })

  test.skipIf(!Bun.which('Xvfb') || !Bun.which('x11vnc'))(
    'the desktop through nginx: public URLs, and an authenticated RFB session over wss',
    async () => {
      const headers = { ...bearer, 'content-type': 'application/json' }
      const connect = await get('/api/vnc/connect', { method: 'POST', headers, body: '{}' })
      expect(connect.status).toBe(200)
      const desktop = await connect.json()
      expect(desktop.viewer_url).toBe(`${https}/vnc/`)
      expect(desktop.websocket_url).toBe(`${https.replace('https:', 'wss:')}/vnc/websockify`)
      // The viewer page itself, through the proxy, with its same-origin CSP.
      const viewer = await get('/vnc/', { headers: bearer })
      expect(viewer.status).toBe(200)
      expect(viewer.headers.get('content-security-policy')).toContain("default-src 'self'")
      await viewer.arrayBuffer()
      const session = await rfbHandshake(
        desktop.websocket_url,
        { ...bearer, origin: https },
        desktop.password,
        tls(),
      )
      expect(session.banner).toBe('RFB 003.008\n')
      expect(session.securityResult).toBe(0)
      expect(session.width).toBeGreaterThan(0)
      session.socket.close()
      expect((await get('/api/vnc/disconnect', { method: 'POST', headers, body: '{}' })).status).toBe(200)
    },
    60_000,
  )

  test('with Gantry down, nginx answers 502 in JSON', async () => {
    await server.running.stop()
    const res = await get('/health')
    expect(res.status).toBe(502)
    expect(await res.json()).toMatchObject({ error: 'upstream_unavailable' })
  })
})
