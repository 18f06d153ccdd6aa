import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { loadConfig } from '../../src/config.ts'
import {
  ADMIN_KEY,
  createUserKey,
  processAlive,
  startTestServer,
  type TestServer,
  waitFor,
} from '../../test/helpers.ts'
import { closeOf, rfbHandshake, sendPointer } from './rfb-client.ts'
import { desktopOf } from './service.ts'

/** Where the real X pointer is on a display. */
function pointerOn(display: string): { x: number; y: number } {
  const out = Bun.spawnSync(['xdotool', 'getmouselocation', '--shell'], {
    // The display takes only Gantry's cookie: a test looking from outside borrows it.
    env: { ...process.env, DISPLAY: display, XAUTHORITY: desktopOf(server.running.gantry).xauthority },
  })
  const text = out.stdout.toString()
  return { x: Number(/X=(\d+)/.exec(text)?.[1]), y: Number(/Y=(\d+)/.exec(text)?.[1]) }
}

const alive = processAlive

/** The status of a WebSocket upgrade the bridge refuses, as a browser's handshake request would see it. */
async function upgradeStatus(url: string, headers: Record<string, string>) {
  const res = await fetch(url.replace(/^ws/, 'http'), {
    headers: {
      connection: 'Upgrade',
      upgrade: 'websocket',
      'sec-websocket-version': '13',
      'sec-websocket-key': btoa('0123456789abcdef'),
      ...headers,
    },
  })
  return { status: res.status, body: (await res.json().catch(() => null)) as any }
}

let server: TestServer
let bridgeUrl: string
let userKey: string
const admin = { authorization: `Bearer ${ADMIN_KEY}` }

beforeAll(async () => {
  server = await startTestServer()
  bridgeUrl = `${server.url.replace('http', 'ws')}/vnc/websockify`
  userKey = (await createUserKey(server, 'bob')).key
}, 60_000)
afterAll(() => server.stop(), 30_000)

describe('status and permissions', () => {
  test('stopped at first; admins see the URLs, others only the state', async () => {
    const mine = await server.api('/api/vnc/status')
    expect(mine.status).toBe(200)
    expect(mine.body).toMatchObject({ state: 'stopped', display: null, restarts: 0, permitted: true })
    expect(mine.body.viewer_url).toBe(`${server.url}/vnc/`)
    expect(mine.body.websocket_url).toBe(`${bridgeUrl}`)
    expect(mine.body.password).toBeUndefined()
    const bobs = await server.api('/api/vnc/status', { key: userKey })
    expect(bobs.status).toBe(200)
    expect(bobs.body).toMatchObject({
      state: 'stopped',
      permitted: false,
      viewer_url: null,
      websocket_url: null,
    })
    expect(bobs.body.processes).toBeUndefined()
  })

  test('no key → 401; a user without the permission → 403 on connect and disconnect', async () => {
    expect((await server.api('/api/vnc/status', { key: null })).status).toBe(401)
    expect((await server.api('/api/vnc/connect', { method: 'POST', json: {}, key: null })).status).toBe(401)
    const connect = await server.api('/api/vnc/connect', { method: 'POST', json: {}, key: userKey })
    expect(connect.status).toBe(403)
    expect(connect.body.message).toContain('VNC_ALLOWED_ROLES')
    expect((await server.api('/api/vnc/disconnect', { method: 'POST', key: userKey })).status).toBe(403)
  })

  test('width or height out of range, not integers, or unknown fields → 422 naming the field', async () => {
    for (const json of [
      { width: 100 },
      { height: 100_000 },
      { width: 1024.5 },
      { width: '1024' },
      { height: null },
      { view_only: 'yes' },
      { depth: 24 },
    ]) {
      const res = await server.api('/api/vnc/connect', { method: 'POST', json })
      expect(res.status, JSON.stringify(json)).toBe(422)
      expect(res.body.error).toBe('validation_failed')
      expect(res.body.message).toContain('body/')
    }
    expect((await server.api('/api/vnc/status')).body.state).toBe('stopped')
  })

  test('disconnect when stopped is idempotent and says so', async () => {
    const res = await server.api('/api/vnc/disconnect', { method: 'POST' })
    expect(res.status).toBe(200)
    expect(res.body.state).toBe('stopped')
    expect(res.body.message).toContain('not running')
  })

  test('a WebSocket to the bridge while the desktop is stopped is closed with a reason', async () => {
    const closed = await closeOf(bridgeUrl, admin)
    expect(closed?.code).toBe(1013)
    expect(closed?.reason).toContain('POST /api/vnc/connect')
  })

  test('the viewer page and noVNC are served from this origin, nothing from elsewhere', async () => {
    const page = await fetch(`${server.url}/vnc/`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toContain('text/html')
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'")
    const html = await page.text()
    expect(html).not.toMatch(/https?:\/\//)
    const script = await (await fetch(`${server.url}/vnc/viewer.js`)).text()
    expect(script).toContain("from './core/rfb.js'")
    expect(script).not.toMatch(/https?:\/\//)
    const rfb = await fetch(`${server.url}/vnc/core/rfb.js`)
    expect(rfb.status).toBe(200)
    expect(rfb.headers.get('content-type')).toContain('javascript')
    // Every module the viewer imports, followed transitively, is served here (noVNC's core and its pako).
    const seen = new Set<string>()
    const pending = [`${server.url}/vnc/viewer.js`]
    while (pending.length) {
      const url = pending.pop()!
      if (seen.has(url)) continue
      seen.add(url)
      const res = await fetch(url)
      expect(res.status, url).toBe(200)
      for (const m of (await res.text()).matchAll(/(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]/g)) {
        expect(m[1]!.startsWith('.'), `${url} imports ${m[1]}`).toBe(true)
        pending.push(new URL(m[1]!, url).toString())
      }
    }
    expect(seen.size).toBeGreaterThan(20)
    expect([...seen].some((u) => u.includes('/vnc/vendor/pako/'))).toBe(true)
    expect((await fetch(`${server.url}/vnc/core/..%2Fpackage.json`)).status).toBe(404)
  })
})

describe('a running desktop', () => {
  let status: any

  test('connect starts Xvfb and x11vnc and answers once VNC answers', async () => {
    const started = performance.now()
    const res = await server.api('/api/vnc/connect', { method: 'POST', json: { width: 1024, height: 768 } })
    const ms = performance.now() - started
    expect(res.status).toBe(200)
    status = res.body
    expect(status).toMatchObject({
      state: 'running',
      width: 1024,
      height: 768,
      view_only: false,
      restarts: 0,
    })
    expect(status.display).toMatch(/^:\d+$/)
    expect(status.password).toMatch(/^[A-Za-z0-9]{8}$/)
    expect(status.processes.map((p: { name: string }) => p.name).sort()).toEqual(['x11vnc', 'xvfb'])
    for (const p of status.processes) expect(alive(p.pid)).toBe(true)
    console.log(`connect → running desktop: ${ms.toFixed(0)} ms`)
  })

  test('a second connect returns the running desktop; another size is a conflict', async () => {
    const again = await server.api('/api/vnc/connect', { method: 'POST' })
    expect(again.status).toBe(200)
    expect(again.body).toMatchObject({ display: status.display, password: status.password })
    expect(again.body.message).toContain('already running')
    const other = await server.api('/api/vnc/connect', { method: 'POST', json: { width: 800 } })
    expect(other.status).toBe(409)
    expect(other.body.details).toMatchObject({ width: 1024, height: 768 })
  })

  test('only permitted users get the password', async () => {
    const bobs = await server.api('/api/vnc/status', { key: userKey })
    expect(bobs.body.state).toBe('running')
    expect(bobs.body.password).toBeUndefined()
    expect(JSON.stringify(bobs.body)).not.toContain(status.password)
  })

  test('the bridge answers RFB 003.008 and completes VNC authentication with the handed-out password', async () => {
    const session = await rfbHandshake(bridgeUrl, admin, status.password)
    expect(session.banner).toBe('RFB 003.008\n')
    expect(session.securityTypes).toContain(2)
    expect(session.securityResult).toBe(0)
    expect({ width: session.width, height: session.height }).toEqual({ width: 1024, height: 768 })
    session.socket.close()
  })

  test('the viewer drives the desktop through the bridge: an RFB pointer event moves the X pointer', async () => {
    const session = await rfbHandshake(bridgeUrl, admin, status.password)
    expect(session.securityResult).toBe(0)
    sendPointer(session.socket, 321, 234)
    await waitFor(() => pointerOn(status.display).x === 321, 5000, 'the pointer to move')
    expect(pointerOn(status.display)).toEqual({ x: 321, y: 234 })
    session.socket.close()
  })

  test('a client asking for the websockify "binary" subprotocol gets it', async () => {
    const socket = new WebSocket(bridgeUrl, { headers: admin, protocols: ['binary'] } as unknown as string[])
    await new Promise((resolve, reject) => {
      socket.addEventListener('open', resolve, { once: true })
      socket.addEventListener('error', reject, { once: true })
    })
    expect(socket.protocol).toBe('binary')
    socket.close()
  })

  test('text frames are refused: the bridge carries binary RFB only', async () => {
    const session = await rfbHandshake(bridgeUrl, admin, status.password)
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      session.socket.addEventListener('close', (e) => resolve({ code: e.code, reason: e.reason })),
    )
    session.socket.send('hello')
    expect(await closed).toEqual({ code: 1003, reason: 'The bridge carries binary RFB frames only.' })
  })

  test('a wrong password fails VNC authentication', async () => {
    const session = await rfbHandshake(bridgeUrl, admin, 'wrongpw1')
    expect(session.securityResult).not.toBe(0)
    session.socket.close()
  })

  test('a browser session cookie from this origin opens the bridge', async () => {
    const login = await server.api('/api/auth/login', {
      method: 'POST',
      json: { api_key: ADMIN_KEY },
      key: null,
    })
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!
    const session = await rfbHandshake(bridgeUrl, { cookie, origin: server.url }, status.password)
    expect(session.securityResult).toBe(0)
    session.socket.close()
  })

  test('the bridge refuses before the upgrade: no auth → 401, foreign Origin → 403, no permission → 403', async () => {
    const none = await upgradeStatus(bridgeUrl, {})
    expect(none.status).toBe(401)
    expect(none.body.error).toBe('unauthorized')
    const foreign = await upgradeStatus(bridgeUrl, { ...admin, origin: 'https://evil.example' })
    expect(foreign.status).toBe(403)
    expect(foreign.body.message).toContain('evil.example')
    const bob = await upgradeStatus(bridgeUrl, { authorization: `Bearer ${userKey}` })
    expect(bob.status).toBe(403)
    await expect(openFails(bridgeUrl, { authorization: `Bearer ${userKey}` })).resolves.toBe(true)
  })

  test('x11vnc killed → restarted and running again, logged, the same password still works', async () => {
    const before = (await server.api('/api/vnc/status')).body
    const vnc = before.processes.find((p: { name: string }) => p.name === 'x11vnc')
    process.kill(vnc.pid, 'SIGKILL')
    const after = await waitFor(
      async () => {
        const s = (await server.api('/api/vnc/status')).body
        return s.state === 'running' && s.restarts === 1 ? s : null
      },
      10_000,
      'x11vnc to be restarted',
    )
    const newVnc = after.processes.find((p: { name: string }) => p.name === 'x11vnc')
    expect(newVnc.pid).not.toBe(vnc.pid)
    expect(after.display).toBe(before.display)
    expect(after.last_error).toContain('x11vnc')
    const messages = server.log.records().map((r) => r.msg)
    expect(messages).toContain('desktop process exited')
    expect(messages).toContain('desktop restarting')
    const session = await rfbHandshake(bridgeUrl, admin, before.password)
    expect(session.securityResult).toBe(0)
    session.socket.close()
  })

  test('disconnect stops every process; the recorded pids are gone', async () => {
    const before = (await server.api('/api/vnc/status')).body
    const pids = before.processes.map((p: { pid: number }) => p.pid)
    expect(pids.length).toBeGreaterThanOrEqual(2)
    const viewer = await rfbHandshake(bridgeUrl, admin, before.password)
    const viewerClosed = new Promise<number>((resolve) =>
      viewer.socket.addEventListener('close', (e) => resolve(e.code)),
    )
    const res = await server.api('/api/vnc/disconnect', { method: 'POST' })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ state: 'stopped', display: null, processes: [] })
    expect(res.body.message).toContain('stopped')
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow()
    expect(await viewerClosed).toBeGreaterThanOrEqual(1000)
  })
})

describe('starting', () => {
  test('connect while starting joins that start: one desktop, both answers running', async () => {
    const [a, b] = await Promise.all([
      server.api('/api/vnc/connect', { method: 'POST', json: { width: 800, height: 600 } }),
      (async () => {
        await waitFor(async () => (await server.api('/api/vnc/status')).body.state === 'starting', 5000)
        return server.api('/api/vnc/connect', { method: 'POST', json: {} })
      })(),
    ])
    expect(a.status).toBe(200)
    expect(b.status).toBe(200)
    expect(b.body.message).toContain('joined')
    expect(b.body.display).toBe(a.body.display)
    expect(b.body.width).toBe(800)
    await server.api('/api/vnc/disconnect', { method: 'POST' })
  })

  test('disconnect while starting: the connect answers 409 and nothing is left behind', async () => {
    const connecting = server.api('/api/vnc/connect', { method: 'POST', json: {} })
    await waitFor(async () => (await server.api('/api/vnc/status')).body.state === 'starting', 5000)
    const stopped = await server.api('/api/vnc/disconnect', { method: 'POST' })
    expect(stopped.status).toBe(200)
    const res = await connecting
    expect(res.status).toBe(409)
    expect(res.body.message).toContain('disconnected while it was starting')
    expect((await server.api('/api/vnc/status')).body).toMatchObject({ state: 'stopped', processes: [] })
  })
})

describe('view-only and roles', () => {
  test('view_only: x11vnc ignores the viewer’s pointer', async () => {
    const res = await server.api('/api/vnc/connect', { method: 'POST', json: { view_only: true } })
    expect(res.status).toBe(200)
    expect(res.body.view_only).toBe(true)
    const session = await rfbHandshake(bridgeUrl, admin, res.body.password)
    expect(session.securityResult).toBe(0)
    const before = pointerOn(res.body.display)
    sendPointer(session.socket, before.x + 50, before.y + 50)
    // A second, authenticated viewer round trip makes sure x11vnc has processed the first one's event.
    const probe = await rfbHandshake(bridgeUrl, admin, res.body.password)
    await Bun.sleep(200)
    expect(pointerOn(res.body.display)).toEqual(before)
    session.socket.close()
    probe.socket.close()
    await server.api('/api/vnc/disconnect', { method: 'POST' })
  })

  test('VNC_ALLOWED_ROLES=admin,user lets users in; an unknown role stops the start naming the variable', async () => {
    expect(() => loadConfig({ VNC_ALLOWED_ROLES: 'admin,root' })).toThrow('VNC_ALLOWED_ROLES')
    const other = await startTestServer({ VNC_ALLOWED_ROLES: 'admin,user' })
    try {
      const key = (await createUserKey(other, 'carol')).key
      const status = await other.api('/api/vnc/status', { key })
      expect(status.body).toMatchObject({ permitted: true, viewer_url: `${other.url}/vnc/` })
      const connect = await other.api('/api/vnc/connect', { method: 'POST', json: {}, key })
      expect(connect.status).toBe(200)
      const bridge = `${other.url.replace('http', 'ws')}/vnc/websockify`
      const session = await rfbHandshake(bridge, { authorization: `Bearer ${key}` }, connect.body.password)
      expect(session.securityResult).toBe(0)
      session.socket.close()
    } finally {
      await other.stop()
    }
  }, 60_000)
})

/** True when a WebSocket open is refused (the client sees an error and never an open). */
function openFails(url: string, headers: Record<string, string>): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, { headers } as unknown as string[])
    socket.addEventListener('open', () => {
      socket.close()
      resolve(false)
    })
    socket.addEventListener('error', () => resolve(true))
  })
}
