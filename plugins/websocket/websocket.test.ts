import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { ServerHandle } from '../../src/core/runtime.ts'
import {
  bearer,
  type StreamWorld,
  startTestServer,
  streamWorld,
  type TestServer,
  waitFor,
} from '../../test/helpers.ts'
import { type LiveSocketBase, SocketList } from './connection.ts'
import { hubsOf } from './stream-hub.ts'
import { connectWs, parseFrames, rawUpgrade, type WsClient } from './testing.ts'

let server: TestServer
let ws: string
let adminId: string
let bob: StreamWorld['bob']
let newStream: StreamWorld['newStream']
const auth = bearer
const events = () => server.running.gantry.events

beforeAll(async () => {
  server = await startTestServer({ HEARTBEAT_INTERVAL_MS: '300', CORS_ORIGINS: 'https://console.lan' })
  ws = server.url.replace('http', 'ws')
  ;({ adminId, bob, newStream } = await streamWorld(server, 'ws'))
}, 30_000)
afterAll(() => server.stop())

describe('refused before the upgrade, as JSON HTTP answers', () => {
  test('no credentials → 401', async () => {
    const stream = await newStream()
    const peer = await rawUpgrade(`${ws}/ws/${stream}`)
    expect(peer.status).toBe(401)
    expect(peer.body.error).toBe('unauthorized')
    peer.socket.destroy()
  })

  test('a wrong key → 401', async () => {
    const stream = await newStream()
    const peer = await rawUpgrade(`${ws}/ws/${stream}`, auth('gk_nope_not-a-real-key-at-all'))
    expect(peer.status).toBe(401)
    peer.socket.destroy()
  })

  test('a foreign Origin → 403, even with a valid key; an allowed or own Origin upgrades', async () => {
    const stream = await newStream()
    const evil = await rawUpgrade(`${ws}/ws/${stream}`, { ...auth(), origin: 'https://evil.example' })
    expect(evil.status).toBe(403)
    expect(evil.body.error).toBe('forbidden_origin')
    evil.socket.destroy()
    for (const origin of ['https://console.lan', server.url]) {
      const ok = await rawUpgrade(`${ws}/ws/${stream}`, { ...auth(), origin })
      expect(ok.status).toBe(101)
      ok.socket.destroy()
    }
  })

  test('an unknown stream and another user’s stream → 404; an admin sees everyone’s', async () => {
    const unknown = await rawUpgrade(`${ws}/ws/task-nope`, auth())
    expect(unknown.status).toBe(404)
    unknown.socket.destroy()
    const malformed = await rawUpgrade(`${ws}/ws/not-a-stream`, auth())
    expect(malformed.status).toBe(404)
    malformed.socket.destroy()
    const adminsStream = await newStream()
    const foreign = await rawUpgrade(`${ws}/ws/${adminsStream}`, auth(bob.key))
    expect(foreign.status).toBe(404)
    expect(foreign.body.message).toContain(adminsStream)
    foreign.socket.destroy()
    const bobsStream = await newStream(bob.user_id)
    const asAdmin = await rawUpgrade(`${ws}/ws/${bobsStream}`, auth())
    expect(asAdmin.status).toBe(101)
    asAdmin.socket.destroy()
  })

  test('an upgrade request Bun cannot complete (no Sec-WebSocket-Key) → 400 in JSON, after the checks', async () => {
    const stream = await newStream()
    const res = await fetch(`${server.url}/ws/${stream}`, {
      headers: { ...auth(), upgrade: 'websocket', connection: 'upgrade' },
    })
    expect(res.status).toBe(400)
    expect((await res.json()).error).toBe('not_a_websocket')
    const anonymous = await fetch(`${server.url}/ws/${stream}`, {
      headers: { upgrade: 'websocket', connection: 'upgrade' },
    })
    expect(anonymous.status).toBe(401)
    await anonymous.body?.cancel()
  })

  test('since negative or non-numeric → 422', async () => {
    const stream = await newStream()
    for (const since of ['-1', 'abc', '1.5', '']) {
      const peer = await rawUpgrade(`${ws}/ws/${stream}?since=${since}`, auth())
      expect(peer.status).toBe(422)
      expect(peer.body.error).toBe('validation_failed')
      peer.socket.destroy()
    }
  })
})

describe('tickets and cookies', () => {
  test('a ticket works once, never shows in the log; garbage tickets → 401', async () => {
    const stream = await newStream(bob.user_id)
    const issued = await server.api('/api/ws-ticket', { method: 'POST', key: bob.key })
    expect(issued.status).toBe(200)
    expect(issued.body.expires_in_seconds).toBeGreaterThan(0)
    const { ticket } = issued.body
    const client = await connectWs(`${ws}/ws/${stream}?ticket=${ticket}`)
    await events().append(stream, 'HELLO')
    expect((await client.next()).type).toBe('HELLO')
    client.ws.close()
    const again = await rawUpgrade(`${ws}/ws/${stream}?ticket=${ticket}`)
    expect(again.status).toBe(401)
    expect(again.body.error).toBe('invalid_ticket')
    again.socket.destroy()
    const garbage = await rawUpgrade(`${ws}/ws/${stream}?ticket=wst_${'x'.repeat(30)}`)
    expect(garbage.status).toBe(401)
    garbage.socket.destroy()
    // A ticket carries its user: bob's ticket does not open the admin's streams.
    const other = (await server.api('/api/ws-ticket', { method: 'POST', key: bob.key })).body.ticket
    const foreign = await rawUpgrade(`${ws}/ws/${await newStream()}?ticket=${other}`)
    expect(foreign.status).toBe(404)
    foreign.socket.destroy()
    expect(server.log.raw()).not.toContain(ticket)
    expect((await server.api('/api/ws-ticket', { method: 'POST', key: null })).status).toBe(401)
  })

  test('the session cookie authenticates the upgrade', async () => {
    const login = await server.api('/api/auth/login', {
      method: 'POST',
      json: { api_key: bob.key },
      key: null,
    })
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!
    const stream = await newStream(bob.user_id)
    const client = await connectWs(`${ws}/ws/${stream}`, { cookie })
    await events().append(stream, 'VIA_COOKIE')
    expect((await client.next()).type).toBe('VIA_COOKIE')
    client.ws.close()
  })
})

describe('events', () => {
  test('envelope, replay with since, then live with no gap and no duplicate', async () => {
    const stream = await newStream()
    await events().appendMany(stream, [
      { type: 'TASK_STARTED', data: { goal: 'x' } },
      { type: 'PLANNING_COMPLETE', data: { modules: ['a.py'] } },
      { type: 'MODULE_STARTED' },
    ])
    const client = await connectWs(`${ws}/ws/${stream}?since=1`, auth())
    const first = await client.next()
    expect(first).toEqual({
      type: 'PLANNING_COMPLETE',
      task_id: stream,
      seq: 2,
      timestamp: expect.any(String),
      data: { modules: ['a.py'] },
    })
    const appending = Promise.all(Array.from({ length: 50 }, (_, i) => events().append(stream, 'LOG', { i })))
    await appending
    await client.next((f) => f.seq === 53)
    expect(client.frames.map((f) => f.seq)).toEqual(Array.from({ length: 52 }, (_, i) => i + 2))
    client.ws.close()
  })

  test('session streams carry session_id; since beyond the head waits for live', async () => {
    const stream = await newStream(adminId, 'session')
    await events().append(stream, 'A')
    const client = await connectWs(`${ws}/ws/${stream}?since=2`, auth())
    await events().append(stream, 'B')
    await events().append(stream, 'C')
    const c = await client.next()
    expect(c).toMatchObject({ type: 'C', session_id: stream, seq: 3 })
    expect(client.frames).toHaveLength(1)
    client.ws.close()
  })

  // Sockets of a stream share one subscription (the hub); one whose since is not the hub's catches up on its own
  // and moves over when level. Joining at every point of a stream that keeps growing: each socket sees every seq
  // after its since exactly once, in order, and all of them end in the hub's live list.
  async function joinsWhileAppending(stream: string) {
    const seqs = (c: WsClient) => c.frames.filter((f) => f.seq !== undefined).map((f) => f.seq)
    const upTo = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i + 1)
    await events().appendMany(
      stream,
      Array.from({ length: 10 }, (_, i) => ({ type: 'LOG', data: { i } })),
    )
    const clients: { since: number; client: WsClient }[] = []
    const appending = (async () => {
      for (let i = 0; i < 60; i++) await events().append(stream, 'LOG', { i })
    })()
    for (const since of [0, 10, 3, 10, 0, 25, 40, 1000]) {
      const client = await connectWs(`${ws}/ws/${stream}?since=${since}`, auth())
      clients.push({ since, client })
      await Bun.sleep(5)
    }
    const latest = await events().head(stream)
    clients.push({ since: latest, client: await connectWs(`${ws}/ws/${stream}?since=${latest}`, auth()) })
    await appending
    await events().append(stream, 'LAST')
    for (const { since, client } of clients) {
      if (since >= 71) continue
      await client.next((f) => f.seq === 71, 10_000)
      expect(seqs(client)).toEqual(upTo(since, 71))
    }
    const hub = hubsOf(server.running.gantry).get(stream)!
    // All but the one waiting for seq 1000, which stays on its own subscription.
    expect(hub.size).toBe(clients.length - 1)
    expect([...hub.behind].map((s) => s.pos)).toEqual([1000])
    for (const { client } of clients) client.ws.close()
    await waitFor(() => !hubsOf(server.running.gantry).has(stream), 2000, 'the hub to close')
  }

  test('sockets joining a growing stream at any since: each seq exactly once, all level ones end up on the hub', async () => {
    await joinsWhileAppending(await newStream())
  }, 30_000)

  test('the same where the runtime cannot publish (Deno): the hub sends socket by socket', async () => {
    const handle = server.running.gantry.state.get('core:server') as ServerHandle
    const publish = handle.publish
    delete handle.publish
    try {
      await joinsWhileAppending(await newStream())
    } finally {
      handle.publish = publish
    }
  }, 30_000)

  test('a socket ahead of the hub (still replaying a long stream) joins when the hub reaches it', async () => {
    const stream = await newStream()
    for (let i = 0; i < 5; i++)
      await events().appendMany(
        stream,
        Array.from({ length: 1000 }, (_, j) => ({ type: 'LOG', data: { i, j } })),
      )
    const seqs = (c: WsClient) => c.frames.map((f) => f.seq)
    // The first socket makes the hub, from 0: it reads 5,000 events back. The second, at the head, is live on its
    // own subscription at once, and takes the new events before the hub, still replaying, has them.
    const fromStart = await connectWs(`${ws}/ws/${stream}?since=0`, auth())
    const atHead = await connectWs(`${ws}/ws/${stream}?since=5000`, auth())
    for (let i = 0; i < 20; i++) await events().append(stream, 'NEW', { i })
    await fromStart.next((f) => f.seq === 5020, 15_000)
    await atHead.next((f) => f.seq === 5020, 15_000)
    await events().append(stream, 'LAST')
    await fromStart.next((f) => f.seq === 5021)
    await atHead.next((f) => f.seq === 5021)
    expect(seqs(fromStart)).toEqual(Array.from({ length: 5021 }, (_, i) => i + 1))
    expect(seqs(atHead)).toEqual(Array.from({ length: 21 }, (_, i) => 5001 + i))
    expect(hubsOf(server.running.gantry).get(stream)!.size).toBe(2)
    fromStart.ws.close()
    atHead.ws.close()
  }, 30_000)

  test('a deleted stream closes its sockets', async () => {
    const stream = await newStream()
    const client = await connectWs(`${ws}/ws/${stream}`, auth())
    await events().append(stream, 'A')
    // One socket on the hub, one still catching up (since beyond the head): both are closed.
    const behind = await connectWs(`${ws}/ws/${stream}?since=5`, auth())
    expect(hubsOf(server.running.gantry).get(stream)!.behind.size).toBe(1)
    await events().deleteStream(stream)
    expect((await client.closed).code).toBe(1000)
    expect((await behind.closed).code).toBe(1000)
    expect(hubsOf(server.running.gantry).has(stream)).toBe(false)
    // The open stream's remembered owner went with its hub: a new upgrade is a 404 again.
    const late = await rawUpgrade(`${ws}/ws/${stream}`, auth())
    expect(late.status).toBe(404)
    late.socket.destroy()
  })
})

describe('client frames', () => {
  test('ping, bad JSON, binary, unknown types, bad guidance: error frames and the socket stays', async () => {
    const stream = await newStream()
    const client = await connectWs(`${ws}/ws/${stream}`, auth())
    client.send({ type: 'ping' })
    expect((await client.next((f) => f.type === 'pong')).timestamp).toBeString()
    client.send('{"type": ')
    expect((await client.next((f) => f.error === 'malformed_json')).type).toBe('error')
    client.send('hello')
    await client.next((f) => f.error === 'malformed_json', 2000, client.frames.length - 1)
    client.ws.send(new Uint8Array([1, 2, 3]))
    expect((await client.next((f) => f.error === 'binary_not_supported')).type).toBe('error')
    client.send('[1,2]')
    await client.next((f) => f.error === 'malformed_frame')
    client.send({ type: 'DANCE' })
    expect((await client.next((f) => f.error === 'unknown_type')).message).toContain('DANCE')
    client.send({ type: 'INTERVENTION' })
    await client.next((f) => f.error === 'invalid_guidance')
    client.send({ type: 'INTERVENTION', guidance: 'x'.repeat(10_001) })
    await client.next(
      (f) =>
        f.error === 'invalid_guidance' && f !== client.frames.find((g) => g.error === 'invalid_guidance'),
    )
    expect(client.ws.readyState).toBe(WebSocket.OPEN)
    client.send({ type: 'INTERVENTION', guidance: 'Use RFC 5322' })
    const echoed = await client.next((f) => f.type === 'INTERVENTION_RECEIVED')
    expect(echoed).toMatchObject({
      task_id: stream,
      seq: 1,
      data: { guidance: 'Use RFC 5322', user_id: adminId },
    })
    expect((await events().readSince(stream, 0))[0]!.type).toBe('INTERVENTION_RECEIVED')
    client.ws.close()
  })

  test('INTERVENTION on a session stream or a finished task → error frame', async () => {
    const session = await newStream(adminId, 'session')
    const s = await connectWs(`${ws}/ws/${session}`, auth())
    s.send({ type: 'INTERVENTION', guidance: 'hi' })
    await s.next((f) => f.error === 'not_a_task')
    s.ws.close()
    const task = await newStream()
    await events().finishStream(task)
    const t = await connectWs(`${ws}/ws/${task}`, auth())
    t.send({ type: 'INTERVENTION', guidance: 'hi' })
    await t.next((f) => f.error === 'task_finished')
    t.ws.close()
  })

  test('a frame over 64 KB → close 1009', async () => {
    const client = await connectWs(`${ws}/ws/${await newStream()}`, auth())
    client.send({ type: 'INTERVENTION', guidance: 'x'.repeat(70_000) })
    expect((await client.closed).code).toBe(1009)
  })

  test('a flood of messages → close 1008', async () => {
    const client = await connectWs(`${ws}/ws/${await newStream()}`, auth())
    for (let i = 0; i < 200; i++) client.send({ type: 'ping' })
    expect((await client.closed).code).toBe(1008)
  })
})

describe('liveness and backpressure', () => {
  test('peers silent for two heartbeats are closed and cleaned up; one answering pings stays', async () => {
    const stream = await newStream()
    const before = server.running.gantry.connections.size
    const listed = () =>
      (server.running.gantry.state.get('websocket:sockets') as { sockets: { size: number } } | undefined)
        ?.sockets.size ?? 0
    const listedBefore = listed()
    // Three raw peers that never answer pings, around a stock client that does: one beat ends all three.
    const first = await rawUpgrade(`${ws}/ws/${stream}`, auth())
    const stock = await connectWs(`${ws}/ws/${stream}`, auth())
    const peers = [first, ...(await Promise.all([1, 2].map(() => rawUpgrade(`${ws}/ws/${stream}`, auth()))))]
    for (const peer of peers) expect(peer.status).toBe(101)
    await waitFor(() => server.running.gantry.connections.size === before + 4, 2000, 'registered')
    expect(listed()).toBe(listedBefore + 4)
    const started = Date.now()
    await Promise.all(peers.map((p) => p.ended))
    const took = Date.now() - started
    expect(took).toBeGreaterThanOrEqual(300)
    expect(took).toBeLessThan(3000)
    await waitFor(() => server.running.gantry.connections.size === before + 1, 2000, 'cleaned up')
    expect(listed()).toBe(listedBefore + 1)
    expect(stock.ws.readyState).toBe(WebSocket.OPEN)
    stock.ws.close()
    await waitFor(() => listed() === listedBefore, 2000, 'the stock client gone')
  }, 10_000)

  test('a stock client answering pings stays connected across many heartbeats', async () => {
    const client = await connectWs(`${ws}/ws/${await newStream()}`, auth())
    await Bun.sleep(1500)
    expect(client.ws.readyState).toBe(WebSocket.OPEN)
    client.ws.close()
  }, 10_000)

  test('a slow reader is closed with 1013 while fast readers stay on time', async () => {
    const stream = await newStream()
    const fast = await Promise.all([1, 2, 3].map(() => connectWs(`${ws}/ws/${stream}`, auth())))
    const slow = await rawUpgrade(`${ws}/ws/${stream}`, auth())
    slow.socket.pause()
    const chunk = 'y'.repeat(32 * 1024)
    const lags: number[] = []
    for (let batch = 0; batch < 20; batch++) {
      const sent = Date.now()
      const acks = await events().appendMany(
        stream,
        Array.from({ length: 20 }, () => ({ type: 'BIG', data: chunk })),
      )
      const last = acks[acks.length - 1]!.seq
      await Promise.all(fast.map((c) => c.next((f) => f.seq === last, 15_000)))
      lags.push(Date.now() - sent)
    }
    for (const c of fast)
      expect(c.frames.map((f) => f.seq)).toEqual(Array.from({ length: 400 }, (_, i) => i + 1))
    // Median delivery of a 640 KB batch to the fast readers stays under two seconds, even on a busy CI box.
    expect(lags.sort((a, b) => a - b)[10]!).toBeLessThan(2000)
    await waitFor(
      () => server.log.records().some((r) => r.msg === 'slow websocket closed' && r.stream === stream),
      5000,
      'server closed the slow reader',
    )
    // Reading again, the slow peer finds a 1013 close after what was buffered.
    let bytes = slow.rest
    slow.socket.on('data', (b: Buffer) => {
      bytes = Buffer.concat([bytes, b])
    })
    slow.socket.resume()
    await waitFor(() => parseFrames(bytes).some((f) => f.opcode === 8), 10_000, 'close frame')
    const close = parseFrames(bytes).find((f) => f.opcode === 8)!
    expect(close.payload.readUInt16BE(0)).toBe(1013)
    slow.socket.destroy()
    for (const c of fast) c.ws.close()
  }, 60_000)
})

test('the socket list: iterating goes on past the socket just yielded when it leaves (the heartbeat closes it)', () => {
  const list = new SocketList()
  const sockets = [1, 2, 3, 4].map((id) => ({ id }) as unknown as LiveSocketBase)
  for (const s of sockets) list.add(s)
  const seen: unknown[] = []
  for (const s of list) {
    seen.push((s as unknown as { id: number }).id)
    if (seen.length !== 2) list.delete(s)
  }
  expect(seen).toEqual([4, 3, 2, 1])
  expect(list.size).toBe(1)
  list.delete(sockets[0]!) // not in the list any more: no change
  expect(list.size).toBe(1)
  expect([...list]).toEqual([sockets[2]!])
})

describe('shutdown', () => {
  test('every socket is closed with 1001', async () => {
    const other = await startTestServer()
    try {
      const owner = (await other.api('/api/me')).body.user_id
      await other.running.gantry.events.createStream('task-shutdown', owner, 'task')
      const url = `${other.url.replace('http', 'ws')}/ws/task-shutdown`
      const clients = await Promise.all([1, 2].map(() => connectWs(url, auth())))
      await other.running.stop()
      for (const c of clients) expect((await c.closed).code).toBe(1001)
    } finally {
      await other.stop()
    }
  }, 30_000)
})
