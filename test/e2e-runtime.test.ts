/**
 * The server as a user runs it, on either runtime: `bun src/index.ts` (default) or `npm run start:deno`'s command
 * (`GANTRY_E2E_RUNTIME=deno`, as .ci/run does), checked from outside over real sockets. On the embedded database
 * unless TEST_DATABASE_URL/DATABASE_URL names a Postgres server (then a fresh database of its own).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import OpenAI from 'openai'
import { rfbHandshake, vncAuthResponse } from '../plugins/vnc/rfb-client.ts'
import { which } from '../src/core/which.ts'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { type GantryProcess, spawnGantry } from './gantry-process.ts'
import { ADMIN_KEY, freshDatabase, ROOT, tempDir, waitFor } from './helpers.ts'
import { openRawWebSocket, type RawWebSocket } from './raw-websocket.ts'

const RUNTIME = process.env.GANTRY_E2E_RUNTIME === 'deno' ? 'deno' : 'bun'

/** The command `npm run start:deno` runs, read from package.json so the test runs what users run (or `entry` instead). */
function serverCommand(entry = 'src/index.ts'): string[] {
  if (RUNTIME === 'bun') return [process.execPath, join(ROOT, entry)]
  const script: string = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts['start:deno']
  return script
    .split(/\s+/)
    .map((part) =>
      part === 'bin/deno.mjs' ? join(ROOT, part) : part === 'src/index.ts' ? join(ROOT, entry) : part,
    )
}

type Frame = Record<string, any>

const HEARTBEAT_MS = 4000

/** Bytes a process has written so far (Linux /proc: sockets included). */
function bytesWritten(pid: number): number {
  return Number(/wchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))![1])
}

/** RFB 3.8 with VNC authentication over a raw socket; ServerInit's size and pixel size. */
async function rawRfbHandshake(viewer: RawWebSocket, password: string) {
  expect(new TextDecoder().decode(await viewer.read(12))).toBe('RFB 003.008\n')
  viewer.send(new TextEncoder().encode('RFB 003.008\n'))
  const types = await viewer.read((await viewer.read(1))[0]!)
  expect([...types]).toContain(2)
  viewer.send(new Uint8Array([2]))
  viewer.send(vncAuthResponse(password, await viewer.read(16)))
  expect(new DataView((await viewer.read(4)).buffer).getUint32(0)).toBe(0)
  viewer.send(new Uint8Array([1]))
  const init = new DataView((await viewer.read(24)).buffer)
  await viewer.read(init.getUint32(20))
  return { width: init.getUint16(0), height: init.getUint16(2), bytesPerPixel: init.getUint8(4) / 8 }
}

/** SetEncodings: raw only, so every update's size follows from its rectangles. */
function setRawEncoding(): Uint8Array {
  const message = new DataView(new ArrayBuffer(8))
  message.setUint8(0, 2)
  message.setUint16(2, 1)
  message.setInt32(4, 0)
  return new Uint8Array(message.buffer)
}

/** FramebufferUpdateRequest, not incremental: the whole area is sent whether it changed or not. */
function updateRequest(x: number, y: number, width: number, height: number): Uint8Array {
  const message = new DataView(new ArrayBuffer(10))
  message.setUint8(0, 3)
  message.setUint16(2, x)
  message.setUint16(4, y)
  message.setUint16(6, width)
  message.setUint16(8, height)
  return new Uint8Array(message.buffer)
}

/** The next FramebufferUpdate's rectangles (raw), its pixels read past; any other message fails the test. */
async function readUpdate(viewer: RawWebSocket, bytesPerPixel: number, timeoutMs: number) {
  const head = new DataView((await viewer.read(4, timeoutMs)).buffer)
  expect(head.getUint8(0)).toBe(0)
  const rects: Array<{ width: number; height: number }> = []
  for (let i = head.getUint16(2); i > 0; i--) {
    const rect = new DataView((await viewer.read(12, timeoutMs)).buffer)
    expect(rect.getInt32(8)).toBe(0)
    const width = rect.getUint16(4)
    const height = rect.getUint16(6)
    rects.push({ width, height })
    await viewer.read(width * height * bytesPerPixel, timeoutMs)
  }
  return rects
}

/** test/fixtures/socket-burst.ts on this runtime, once it listens; the caller kills it. */
async function startBurst(env: Record<string, string>): Promise<{ burst: GantryProcess; port: number }> {
  const burst = spawnGantry(env, serverCommand('test/fixtures/socket-burst.ts'))
  try {
    const port = await waitFor(() => /port (\d+)/.exec(burst.stdout())?.[1], 60_000, 'the fixture to listen')
    return { burst, port: Number(port) }
  } catch (err) {
    burst.kill('SIGKILL')
    throw err
  }
}

/** True when something accepts a TCP connection on 127.0.0.1:`port`. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** A WebSocket that records every frame it gets. */
async function openSocket(url: string, headers: Record<string, string> = {}) {
  const frames: Frame[] = []
  const ws = new WebSocket(url, { headers } as any)
  let closeCode: number | undefined
  const closed = new Promise<number>((resolve) =>
    ws.addEventListener('close', (e) => {
      closeCode = e.code
      resolve(e.code)
    }),
  )
  ws.addEventListener('message', (e) => frames.push(JSON.parse(String(e.data))))
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve, { once: true })
    ws.addEventListener('error', () => reject(new Error(`could not open ${url}`)), { once: true })
  })
  return { ws, frames, closed, closeCode: () => closeCode }
}

describe(`the server as a process on ${RUNTIME}`, () => {
  let ollama: MockOllama
  let database: Awaited<ReturnType<typeof freshDatabase>>
  let gantry: GantryProcess
  let url: string
  const auth = { authorization: `Bearer ${ADMIN_KEY}` }
  const json = { ...auth, 'content-type': 'application/json' }

  beforeAll(async () => {
    // Deno is fetched on first use, here with the caller's own HOME (its npm settings), not the server's.
    if (RUNTIME === 'deno') {
      const fetched = spawnSync('node', [join(ROOT, 'bin/deno.mjs'), '--print-path'], { encoding: 'utf8' })
      if (fetched.status !== 0) throw new Error(`could not fetch Deno: ${fetched.stderr}`)
    }
    ollama = await startMockOllama()
    database = await freshDatabase()
    gantry = spawnGantry(
      {
        DATA_DIR: tempDir(),
        ADMIN_API_KEY: ADMIN_KEY,
        OLLAMA_HOST: ollama.url,
        OLLAMA_MODEL: 'qwen3',
        CODE_EXECUTION: 'unsandboxed',
        // Short enough for the heartbeat test below, long enough for the VNC viewer's pause (about 2 s).
        HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
        ...(database.url ? { DATABASE_URL: database.url } : {}),
      },
      serverCommand(),
    )
    // Deno is fetched on its first use (a few seconds), then compiles the server's modules.
    url = await gantry.url(120_000)
  }, 180_000)

  afterAll(async () => {
    gantry?.proc.kill('SIGTERM')
    if (gantry) await Promise.race([gantry.exit(), Bun.sleep(15_000)])
    gantry?.kill('SIGKILL')
    await ollama?.stop()
    await database?.drop()
  })

  test('health, ready and the docs; GET / names the runtime that serves', async () => {
    expect((await fetch(`${url}/health`)).status).toBe(200)
    const root = (await (await fetch(`${url}/`, { headers: { accept: 'application/json' } })).json()) as Frame
    expect(root.runtime).toStartWith(`${RUNTIME} `)
    const ready = await fetch(`${url}/ready`)
    expect(ready.status).toBe(200)
    const docs = await fetch(`${url}/docs`)
    expect(docs.status).toBe(200)
    expect(docs.headers.get('content-type')).toContain('text/html')
    const spec = (await (await fetch(`${url}/docs/json`)).json()) as { paths: Record<string, unknown> }
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining(['/tasks', '/api/me', '/v1/chat/completions']),
    )
  })

  test('errors are JSON: no key 401, unknown route 404, a form body 415, a bad body 422', async () => {
    const noKey = await fetch(`${url}/api/me`)
    expect(noKey.status).toBe(401)
    expect(((await noKey.json()) as Frame).error).toBeString()
    const missing = await fetch(`${url}/no/such/route`, { headers: auth })
    expect(missing.status).toBe(404)
    expect(((await missing.json()) as Frame).error).toBe('not_found')
    const form = await fetch(`${url}/tasks`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'text/plain' },
      body: 'hi',
    })
    expect(form.status).toBe(415)
    const bad = await fetch(`${url}/tasks`, { method: 'POST', headers: json, body: '{"prompt": 5}' })
    expect(bad.status).toBe(422)
    expect(((await bad.json()) as Frame).error).toBe('validation_failed')
  })

  test('a cookie login works, and its state changes need this origin; a ticket opens a socket once', async () => {
    const login = await fetch(`${url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ api_key: ADMIN_KEY }),
    })
    expect(login.status).toBe(200)
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!
    const me = await fetch(`${url}/api/me`, { headers: { cookie } })
    expect(((await me.json()) as Frame).via).toBe('session')
    const foreign = await fetch(`${url}/api/ws-ticket`, {
      method: 'POST',
      headers: { cookie, origin: 'https://evil.example' },
    })
    expect(foreign.status).toBe(403)
    const { ticket } = (await (
      await fetch(`${url}/api/ws-ticket`, { method: 'POST', headers: auth })
    ).json()) as Frame
    const session = await fetch(`${url}/api/sessions`, { method: 'POST', headers: json, body: '{}' })
    const sessionId = ((await session.json()) as Frame).session_id as string
    const socket = await openSocket(`${url.replace('http', 'ws')}/ws/${sessionId}?ticket=${ticket}`)
    socket.ws.close()
    await socket.closed
    const again = await fetch(`${url}/ws/${sessionId}?ticket=${ticket}`, {
      headers: {
        upgrade: 'websocket',
        connection: 'Upgrade',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      },
    })
    expect(again.status).toBe(401)
  })

  test('a task runs to completion; the socket replays from since exactly; the SSE log ends', async () => {
    const created = (await (
      await fetch(`${url}/tasks`, {
        method: 'POST',
        headers: json,
        body: JSON.stringify({ prompt: 'Build an email validator' }),
      })
    ).json()) as Frame
    const id = created.task_id as string
    const live = await openSocket(`${url.replace('http', 'ws')}/ws/${id}`, auth)
    await waitFor(() => live.frames.find((f) => f.type === 'TASK_COMPLETE'), 120_000, 'TASK_COMPLETE')
    const seqs = live.frames.filter((f) => typeof f.seq === 'number').map((f) => f.seq)
    expect(seqs).toEqual(seqs.map((_, i) => i + 1))
    live.ws.close()
    const from = Math.floor(seqs.length / 2)
    const replay = await openSocket(`${url.replace('http', 'ws')}/ws/${id}?since=${from}`, auth)
    await waitFor(
      () => replay.frames.filter((f) => typeof f.seq === 'number').length >= seqs.length - from,
      20_000,
      'the replay',
    )
    expect(replay.frames.filter((f) => typeof f.seq === 'number').map((f) => f.seq)).toEqual(seqs.slice(from))
    replay.ws.close()
    const results = (await (await fetch(`${url}/tasks/${id}/results`, { headers: auth })).json()) as Frame
    expect(results.modules.length).toBeGreaterThan(0)
    const log = await fetch(`${url}/tasks/${id}/logs/stream`, { headers: auth })
    expect(log.headers.get('content-type')).toContain('text/event-stream')
    const text = await log.text() // the stream ends after the finished task's last line
    expect(text).toContain('data: [INFO] Task started')
    expect(text).toContain('event: end')
  }, 150_000)

  test('the chat socket streams reasoning, then the answer, then the response', async () => {
    const chat = await openSocket(`${url.replace('http', 'ws')}/ws/chat/e2e-${RUNTIME}`, auth)
    await waitFor(() => chat.frames.find((f) => f.type === 'connected'), 10_000, 'connected')
    chat.ws.send(
      JSON.stringify({
        type: 'chat',
        payload: { message: 'Hello!', agent_name: 'researcher', enable_reasoning: true },
      }),
    )
    const response = await waitFor(() => chat.frames.find((f) => f.type === 'response'), 30_000, 'response')
    const types = chat.frames.map((f) => f.type)
    expect(types).toContain('reasoning')
    expect(types.indexOf('reasoning_complete')).toBeLessThan(types.indexOf('content'))
    const answer = chat.frames
      .filter((f) => f.type === 'content')
      .map((f) => f.content)
      .join('')
    expect(answer.length).toBeGreaterThan(0)
    expect(response!.content).toBe(answer)
    chat.ws.close()
  }, 60_000)

  test('socket limits: a frame over 64 KB closes with 1009; a peer that never answers pings is closed', async () => {
    const big = await openSocket(`${url.replace('http', 'ws')}/ws/chat/e2e-big-${RUNTIME}`, auth)
    await waitFor(() => big.frames.find((f) => f.type === 'connected'), 10_000, 'connected')
    big.ws.send(JSON.stringify({ type: 'chat', payload: { message: 'x'.repeat(70_000) } }))
    expect(await big.closed).toBe(1009)
    // A raw peer that stays silent: the heartbeat (Bun: the server's ping round; Deno: idleTimeout) ends it.
    const silent = await openRawWebSocket(
      `${url.replace('http', 'ws')}/ws/chat/e2e-silent-${RUNTIME}`,
      auth,
      {
        answerPings: false,
      },
    )
    const opened = Date.now()
    await waitFor(() => silent.closeCode() !== undefined || silent.ended(), 8 * HEARTBEAT_MS, 'the close')
    const took = Date.now() - opened
    expect(took).toBeGreaterThanOrEqual(HEARTBEAT_MS)
    silent.end()
  }, 60_000)

  test('a chat socket that stops reading is closed with 1013 while a reading one gets the whole answer', async () => {
    const session = `e2e-slow-${RUNTIME}`
    // About 10 MB of answer, in 64 KB tokens: more than the server's 1 MB limit and than the kernel's buffers for
    // a peer that stopped reading before any of it came (its receive buffer grows only as it reads).
    const tokens = Array.from({ length: 160 }, (_, i) => `${String(i).padStart(4, '0')}${'z'.repeat(65_000)}`)
    ollama.enqueue({ content: tokens.join(' ') })
    const slow = await openRawWebSocket(`${url.replace('http', 'ws')}/ws/chat/${session}`, auth)
    slow.pause()
    const fast = await openSocket(`${url.replace('http', 'ws')}/ws/chat/${session}`, auth)
    await waitFor(() => fast.frames.find((f) => f.type === 'connected'), 10_000, 'connected')
    fast.ws.send(JSON.stringify({ type: 'chat', payload: { message: 'Write a lot.' } }))
    // The reading socket must not be taken for a slow one while the 10 MB answer is on its way to it.
    await waitFor(
      () => fast.frames.some((f) => f.type === 'response') || fast.closeCode() !== undefined,
      60_000,
      'response',
    )
    expect(fast.closeCode()).toBeUndefined()
    expect(fast.frames.find((f) => f.type === 'response')!.content).toBe(tokens.join(' '))
    // Reading again, the slow peer finds the server's close after what was buffered for it.
    slow.resume()
    await waitFor(() => slow.closeCode() !== undefined, 20_000, 'the close frame')
    expect(slow.closeCode()).toBe(1013)
    slow.end()
    fast.ws.close()
  }, 120_000)

  test('40 MB sent in one turn and nothing after: a peer that does not read is still closed with 1013', async () => {
    // The real seam and LiveSocket in a one-route server. Deno measures what is queued only after the turn, when
    // no later send is there to see it; Bun's send says so at once. The peer stops reading before it asks for the
    // burst: had it read even a little, the kernel would have grown its receive buffer (tcp_rmem goes to 32 MB
    // on some machines) and taken the whole burst, leaving the server nothing queued to notice. 40 MB is more
    // than the kernel's buffers can take either way.
    const { burst, port } = await startBurst({ BURST_FRAMES: '640' })
    try {
      const peer = await openRawWebSocket(`ws://127.0.0.1:${port}/`, {})
      peer.pause()
      peer.send(new TextEncoder().encode('go'))
      await Bun.sleep(1000)
      peer.resume()
      await waitFor(() => peer.closeCode() !== undefined || peer.ended(), 10_000, 'the close frame')
      expect(peer.closeCode()).toBe(1013)
      expect(burst.stdout()).toContain('slow websocket closed')
      peer.end()
    } finally {
      burst.kill('SIGKILL')
    }
  }, 90_000)

  test('a 10 MB frame and more after it reach a peer that reads: one big frame is not a slow reader', async () => {
    // Deno counts a frame as queued until all of it is written, which takes a while for 10 MB even to a peer
    // that reads; only what waits besides it says the peer is not reading (the chat test's answer, every time).
    const big = 10 * 1024 * 1024
    const { burst, port } = await startBurst({
      BURST_FRAMES: '1',
      BURST_FRAME_BYTES: String(big),
      BURST_TAIL: '20',
    })
    try {
      const peer = await openRawWebSocket(`ws://127.0.0.1:${port}/`, {})
      peer.send(new TextEncoder().encode('go'))
      const arrived = await peer.available(big + 20 * 1024, 30_000)
      expect({
        arrived,
        closeCode: peer.closeCode(),
        log: burst.stdout().includes('slow websocket closed'),
      }).toEqual({
        arrived: true,
        closeCode: undefined,
        log: false,
      })
      peer.end()
      // kill -9 of what the test started takes the server with it, Deno under its Node wrapper included.
      burst.kill('SIGKILL')
      await waitFor(async () => !(await accepts(port)), 10_000, 'the fixture to stop listening')
    } finally {
      burst.kill('SIGKILL')
    }
  }, 90_000)

  test('the OpenAI streaming API, with the openai client', async () => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: ADMIN_KEY })
    const stream = await client.chat.completions.create({
      model: 'researcher',
      stream: true,
      messages: [{ role: 'user', content: 'Say hello' }],
    })
    let text = ''
    let finish: string | null | undefined
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? ''
      finish = chunk.choices[0]?.finish_reason ?? finish
    }
    expect(text.length).toBeGreaterThan(0)
    expect(finish).toBe('stop')
  }, 60_000)

  test('the console page and its hashed script and style sheet come with their content types', async () => {
    // The build runs at start when dist/ is stale; the page names the assets once it is in place.
    const page = await waitFor(
      async () => {
        const res = await fetch(`${url}/`, { headers: { accept: 'text/html' } })
        return res.status === 200 ? await res.text() : undefined
      },
      120_000,
      'the console build',
    )
    const script = /src="(\/console\/[^"]+\.js)"/.exec(page!)![1]!
    const style = /href="(\/console\/[^"]+\.css)"/.exec(page!)![1]!
    const js = await fetch(`${url}${script}`)
    expect(js.status).toBe(200)
    expect(js.headers.get('content-type')).toStartWith('text/javascript')
    expect(js.headers.get('cache-control')).toBe('public, max-age=31536000, immutable')
    expect(js.headers.get('x-content-type-options')).toBe('nosniff')
    const css = await fetch(`${url}${style}`)
    expect(css.headers.get('content-type')).toStartWith('text/css')
    await css.arrayBuffer()
    const missing = await fetch(`${url}/console/nope-123.js`)
    expect(missing.status).toBe(404)
    expect(((await missing.json()) as Frame).error).toBe('not_found')
  }, 130_000)

  const desktopInstalled = !!which('Xvfb') && !!which('x11vnc')

  test("the viewer page and noVNC's modules come with their content types (browsers refuse a module without)", async () => {
    const page = await fetch(`${url}/vnc/`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toStartWith('text/html')
    const css = await fetch(`${url}/vnc/viewer.css`)
    expect(css.headers.get('content-type')).toStartWith('text/css')
    for (const path of [
      '/vnc/viewer.js',
      '/vnc/core/rfb.js',
      '/vnc/core/util/events.js',
      '/vnc/vendor/pako/lib/zlib/inflate.js',
    ]) {
      const res = await fetch(`${url}${path}`)
      expect(res.status, path).toBe(200)
      expect(res.headers.get('content-type'), path).toStartWith('text/javascript')
      expect((await res.text()).length, path).toBeGreaterThan(100)
    }
    const outside = await fetch(`${url}/vnc/core/..%2F..%2Fpackage.json`)
    expect(outside.status).toBe(404)
    expect(((await outside.json()) as Frame).error).toBe('not_found')
  })

  test.skipIf(!desktopInstalled)(
    'the desktop: the VNC bridge answers RFB and authenticates with the handed-out password',
    async () => {
      const started = await fetch(`${url}/api/vnc/connect`, {
        method: 'POST',
        headers: json,
        body: JSON.stringify({ width: 800, height: 600 }),
      })
      expect(started.status).toBe(200)
      const status = (await started.json()) as Frame
      const session = await rfbHandshake(`${url.replace('http', 'ws')}/vnc/websockify`, auth, status.password)
      expect(session.banner).toBe('RFB 003.008\n')
      expect(session.securityResult).toBe(0)
      expect({ width: session.width, height: session.height }).toEqual({ width: 800, height: 600 })
      session.socket.close()
      const wrong = await rfbHandshake(`${url.replace('http', 'ws')}/vnc/websockify`, auth, 'wrong123')
      expect(wrong.securityResult).not.toBe(0)
      wrong.socket.close()
    },
    60_000,
  )

  test.skipIf(!desktopInstalled)(
    'the desktop: a viewer that stops reading holds x11vnc back (backpressure); every byte then arrives in order',
    async () => {
      const started = await fetch(`${url}/api/vnc/connect`, {
        method: 'POST',
        headers: json,
        body: JSON.stringify({ width: 800, height: 600 }),
      })
      const status = (await started.json()) as Frame
      const x11vnc = (status.processes as Array<{ name: string; pid: number }>).find(
        (p) => p.name === 'x11vnc',
      )!
      const viewer = await openRawWebSocket(`${url.replace('http', 'ws')}/vnc/websockify`, auth)
      const init = await rawRfbHandshake(viewer, status.password)
      const frameBytes = init.width * init.height * init.bytesPerPixel
      viewer.send(setRawEncoding())
      // The viewer stops reading and keeps asking for the whole screen: 100 full frames, about 190 MB.
      viewer.pause()
      const before = bytesWritten(x11vnc.pid)
      const requests = 100
      for (let i = 0; i < requests; i++) {
        viewer.send(updateRequest(0, 0, init.width, init.height))
        await Bun.sleep(20)
      }
      const written = bytesWritten(x11vnc.pid) - before
      // x11vnc could write only what the socket buffers between it and the viewer hold: the bridge stopped
      // reading from it. Without backpressure the server would take (and keep) all of it.
      expect(requests * frameBytes).toBeGreaterThan(150e6)
      expect(written).toBeLessThan(40e6)
      expect(viewer.closeCode()).toBeUndefined()
      viewer.resume()
      // What was held back arrives, whole: full-screen raw updates until the backlog is done (x11vnc merges
      // requests that wait), then exactly the small one asked last; a lost or repeated byte would misalign.
      let updates = 0
      while (await viewer.available(1, 2000)) {
        const rects = await readUpdate(viewer, init.bytesPerPixel, 10_000)
        expect(rects.reduce((sum, r) => sum + r.width * r.height, 0)).toBe(init.width * init.height)
        updates++
      }
      expect(updates).toBeGreaterThan(0)
      viewer.send(updateRequest(16, 16, 8, 8))
      expect(await readUpdate(viewer, init.bytesPerPixel, 10_000)).toEqual([{ width: 8, height: 8 }])
      viewer.end()
      expect(
        (await fetch(`${url}/api/vnc/disconnect`, { method: 'POST', headers: json, body: '{}' })).status,
      ).toBe(200)
    },
    90_000,
  )
})
