/**
 * Hostile input refused at the edge (issue 12, items 3–6): deep JSON, NUL and lone surrogates anywhere (path,
 * query, body, WebSocket frame), fractional integers, chunked bodies over BODY_LIMIT_BYTES, and every `since` /
 * Last-Event-ID through one parser. Each case was a 500, a hang or an accepted value before.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { request as httpRequest } from 'node:http'
import { connectWs, rawUpgrade } from '../plugins/websocket/testing.ts'
import { ADMIN_KEY, bearer, startTestServer, streamWorld, type TestServer } from './helpers.ts'

let server: TestServer
let ws: string
let task: string
let session: string

beforeAll(async () => {
  server = await startTestServer({ BODY_LIMIT_BYTES: String(1024 * 1024) })
  ws = server.url.replace('http', 'ws')
  const world = await streamWorld(server, 'edge')
  task = await world.newStream()
  session = await world.newStream(world.adminId, 'session')
}, 60_000)
afterAll(() => server.stop())

const post = (path: string, body: string, key: string | null = ADMIN_KEY) =>
  server.api(path, { method: 'POST', key, body, headers: { 'content-type': 'application/json' } })

const nested = (depth: number, inner = '1') => '['.repeat(depth) + inner + ']'.repeat(depth)

describe('deep JSON is refused before parsing and validation (item 3)', () => {
  test('100,000 levels in a field of the public login → 400 too_deep, not a 500', async () => {
    const res = await post('/api/auth/login', `{"api_key": ${nested(100_000)}}`, null)
    expect(res.status).toBe(400)
    expect(res.body).toMatchObject({ error: 'too_deep', details: { max_depth: 64 } })
  })

  test('deep objects and deep arrays beside valid fields → 400 too_deep', async () => {
    const objects = `${'{"a":'.repeat(40_000)}1${'}'.repeat(40_000)}`
    for (const body of [`{"api_key": ${objects}}`, `{"api_key": "x", "z": ${nested(100_000)}}`]) {
      const res = await post('/api/auth/login', body, null)
      expect(res.status).toBe(400)
      expect(res.body.error).toBe('too_deep')
    }
  })

  test('brackets inside strings do not count; 64 levels pass the depth check', async () => {
    const inString = await post('/api/keys', JSON.stringify({ user: 'brackets', name: '['.repeat(80) }))
    expect(inString.status).toBe(201)
    const atLimit = await post('/api/keys', `{"user": "deep-ok", "name": ${nested(63, '"x"')}}`)
    expect(atLimit.status).toBe(422)
    expect(atLimit.body.details[0].path).toBe('body/name')
    expect((await post('/api/keys', `{"user": ${nested(64, '"x"')}}`)).body.error).toBe('too_deep')
  })

  test('not JSON → 400 invalid_json; not UTF-8 → 400 invalid_json', async () => {
    const res = await post('/api/keys', '{"user": ')
    expect(res.status).toBe(400)
    expect(res.body.error).toBe('invalid_json')
    const bytes = await fetch(`${server.url}/api/keys`, {
      method: 'POST',
      headers: { ...bearer(), 'content-type': 'application/json' },
      body: new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
    })
    expect(bytes.status).toBe(400)
    expect((await bytes.json()).error).toBe('invalid_json')
  })
})

describe('text Postgres cannot store, and fractional integers, are 4xx (item 4)', () => {
  test('NUL in a path parameter, on /:id routes of every method → 422 naming the path', async () => {
    const cases: [string, string][] = [
      ['GET', '/tasks/a%00b'],
      ['GET', '/tasks/a%00b/results'],
      ['GET', '/tasks/a%00b/logs'],
      ['POST', '/tasks/a%00b/cancel'],
      ['DELETE', '/tasks/a%00b'],
      ['GET', '/api/sessions/a%00b'],
      ['DELETE', '/api/keys/a%00b'],
      ['GET', '/v1/agents/a%00b'],
    ]
    for (const [method, path] of cases) {
      const res = await server.api(path, { method })
      expect(`${method} ${path} ${res.status}`).toBe(`${method} ${path} 422`)
      expect(res.body.details[0].path).toBe('path')
    }
  })

  test('NUL or a broken escape in a WebSocket URL → 4xx before the upgrade', async () => {
    for (const path of ['/ws/chat/a%00b', `/ws/${task}?ticket=a%00b`, '/ws/chat/x?since=%ED%A0%80']) {
      const peer = await rawUpgrade(`${ws}${path}`, bearer())
      expect([400, 422]).toContain(peer.status)
      expect(peer.body.error).toMatch(/^(bad_request|validation_failed)$/)
      peer.socket.destroy()
    }
  })

  test('NUL or a broken escape in the query → 4xx', async () => {
    const nul = await server.api('/tasks?status=a%00')
    expect(nul.status).toBe(422)
    expect(nul.body.details[0].path).toBe('query/status')
    expect((await server.api('/tasks?status=%ED%A0%80')).status).toBe(400)
    expect((await server.api('/tasks/%E0%A4')).status).toBe(400)
  })

  test('NUL and lone surrogates in body fields → 422 with the field path', async () => {
    const cases: [string, string, string][] = [
      ['/tasks', '{"prompt": "a\\u0000b"}', 'body/prompt'],
      ['/tasks', '{"prompt": "x\\ud800y"}', 'body/prompt'],
      ['/tasks', '{"prompt": "x\\udc00"}', 'body/prompt'],
      ['/api/sessions', '{"name": "s\\u0000"}', 'body/name'],
      ['/api/keys', '{"user": "u\\u0000"}', 'body/user'],
      ['/v1/agents', '{"name": "a", "system_prompt": "p\\ud800"}', 'body/system_prompt'],
      ['/api/keys', '{"user": "u", "k\\u0000": 1}', 'body/k?'],
    ]
    for (const [path, body, field] of cases) {
      const res = await post(path, body)
      expect(`${path} ${body} → ${res.status}`).toBe(`${path} ${body} → 422`)
      expect(res.body.details[0].path).toBe(field)
    }
    // A surrogate pair is ordinary Unicode (an emoji), not refused.
    const emoji = await post('/api/keys', '{"user": "emoji-\\ud83d\\ude00"}')
    expect(emoji.status).toBe(201)
  })

  test('fractional limit and offset → 422 on /tasks and /api/sessions', async () => {
    for (const path of [
      '/tasks?limit=1.5',
      '/tasks?offset=2.5',
      '/v1/tasks?limit=1.5',
      '/api/sessions?limit=1.5',
      `/tasks/${task}/logs?limit=1.5`,
      `/tasks/${task}/logs?after=0.5`,
    ]) {
      const res = await server.api(path)
      expect(`${path} ${res.status}`).toBe(`${path} 422`)
      expect(res.body.error).toBe('validation_failed')
    }
  })

  test('over the WebSocket: NUL, lone surrogates and deep frames get error frames, not internal_error', async () => {
    const chat = await connectWs(`${ws}/ws/chat/edge_chat`, bearer())
    await chat.next((f) => f.type === 'connected')
    const sent = [
      '{"type":"chat","payload":{"message":"a\\u0000b"}}',
      '{"type":"chat","payload":{"message":"x\\ud800y"}}',
      `{"type":"chat","payload":${nested(1000, '{}')}}`,
      ` {"type":"chat","payload":{"message":"a\\u0000b"}}`,
    ]
    for (const frame of sent) {
      const from = chat.frames.length
      chat.send(frame)
      const error = await chat.next((f) => f.type === 'error', 5000, from)
      expect(['validation_failed', 'too_deep']).toContain(error.error)
    }
    expect(chat.frames.some((f) => f.error === 'internal_error' || f.code === 'internal_error')).toBe(false)
    const live = await connectWs(`${ws}/ws/${task}`, bearer())
    live.send('{"type":"INTERVENTION","guidance":"stop\\u0000"}')
    expect((await live.next((f) => f.type === 'error')).error).toBe('validation_failed')
    chat.ws.close()
    live.ws.close()
  })
})

/** A body sent with Transfer-Encoding: chunked (no Content-Length), in 64 KB chunks, through node:http. */
function postChunked(path: string, total: number): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, server.url)
    const req = httpRequest(
      url,
      { method: 'POST', headers: { ...bearer(), 'content-type': 'application/json' } },
      (res) => {
        let text = ''
        res.on('data', (d) => {
          text += d
        })
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }))
      },
    )
    req.on('error', (err) => ((err as { code?: string }).code === 'EPIPE' ? undefined : reject(err)))
    const prefix = '{"prompt": "'
    const chunk = 'a'.repeat(64 * 1024)
    req.write(prefix)
    let sent = prefix.length
    const pump = () => {
      while (sent + chunk.length < total) {
        sent += chunk.length
        if (!req.write(chunk)) return void req.once('drain', pump)
      }
      req.end('"}')
    }
    pump()
  })
}

describe('BODY_LIMIT_BYTES holds for chunked bodies too (item 5)', () => {
  test('3 MB chunked → 413 payload_too_large, as with Content-Length', async () => {
    const chunked = await postChunked('/tasks', 3 * 1024 * 1024)
    expect(chunked.status).toBe(413)
    expect(chunked.body).toMatchObject({ error: 'payload_too_large', details: { limit_bytes: 1024 * 1024 } })
    const declared = await post('/tasks', JSON.stringify({ prompt: 'a'.repeat(3 * 1024 * 1024) }))
    expect(declared.status).toBe(413)
    // Even where no route reads the body, and past what Bun itself would take (plain text before).
    expect((await postChunked(`/tasks/${task}/cancel`, 3 * 1024 * 1024)).status).toBe(413)
    const huge = await post('/tasks', JSON.stringify({ prompt: 'a'.repeat(9 * 1024 * 1024) }))
    expect(huge.status).toBe(413)
    expect(huge.body.error).toBe('payload_too_large')
  })

  test('a chunked body under the limit is read and validated as usual', async () => {
    const res = await postChunked('/tasks', 100 * 1024)
    expect(res.status).toBe(422)
    expect(res.body.details[0].path).toBe('body/prompt')
  })
})

describe('one parser for every since and Last-Event-ID (item 6)', () => {
  const bad = ['1.5', '0x10', '1e1', '1e23', '-1', '+1', ' 1', '', 'abc', '9'.repeat(16)]

  test('WS /ws/chat/:id and WS /ws/:id: 422 before the upgrade for each', async () => {
    for (const path of ['/ws/chat/edge_since', `/ws/${task}`]) {
      for (const since of bad) {
        const peer = await rawUpgrade(`${ws}${path}?since=${encodeURIComponent(since)}`, bearer())
        expect(`${path}?since=${since} ${peer.status}`).toBe(`${path}?since=${since} 422`)
        expect(peer.body.error).toBe('validation_failed')
        peer.socket.destroy()
      }
      const ok = await rawUpgrade(`${ws}${path}?since=0`, bearer())
      expect(ok.status).toBe(101)
      ok.socket.destroy()
    }
  })

  test('the SSE routes: ?since= and Last-Event-ID, 422 for each', async () => {
    for (const path of [`/tasks/${task}/logs/stream`, `/api/streams/${session}/events`]) {
      for (const since of bad) {
        const query = await server.api(`${path}?since=${encodeURIComponent(since)}`)
        expect(`${path}?since=${since} ${query.status}`).toBe(`${path}?since=${since} 422`)
        if (since.trim() !== since || since === '') continue // HTTP trims header values
        const header = await server.api(path, { headers: { 'last-event-id': since } })
        expect(`${path} Last-Event-ID ${since} ${header.status}`).toBe(`${path} Last-Event-ID ${since} 422`)
        expect(header.body.message).toContain('Last-Event-ID')
      }
    }
  })
})
