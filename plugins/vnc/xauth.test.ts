// The desktop's X display takes only Gantry's cookie: another local user (or any process Gantry did not
// give the cookie to) cannot drive it past VNC_ALLOWED_ROLES, while Gantry's own X clients — x11vnc behind
// the viewer, the window manager, the `computer` tool's xdotool and import — work as before.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { Principal } from '../../src/core/auth.ts'
import { ADMIN_KEY, startTestServer, type TestServer } from '../../test/helpers.ts'
import { rfbHandshake, sendPointer } from './rfb-client.ts'
import { desktopOf } from './service.ts'

let server: TestServer
let display: string
let password: string
const isRoot = process.getuid?.() === 0
const admin: Principal = {
  userId: 'usr-admin',
  userName: 'admin',
  role: 'admin',
  keyId: null,
  keyName: null,
  via: 'api_key',
}

beforeAll(async () => {
  server = await startTestServer()
  const res = await server.api('/api/vnc/connect', { method: 'POST', json: { width: 640, height: 480 } })
  expect(res.status).toBe(200)
  const status = (await server.api('/api/vnc/status')).body
  display = status.display
  password = status.password
}, 60_000)
afterAll(() => server.stop(), 30_000)

/** `xdotool getmouselocation` on the desktop's display, run with `prefix` and `env` only. */
function xdotool(prefix: string[], env: Record<string, string>) {
  const run = Bun.spawnSync(
    [
      ...prefix,
      'env',
      '-i',
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      'xdotool',
      'getmouselocation',
      '--shell',
    ],
    {
      stdout: 'pipe',
      stderr: 'pipe',
    },
  )
  return { code: run.exitCode, out: run.stdout.toString(), err: run.stderr.toString() }
}

const PATH = process.env.PATH ?? '/usr/bin:/bin'
const nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']

describe('the X display of the desktop', () => {
  test.skipIf(!isRoot)('another local user (uid 65534) is refused by the X server', () => {
    const refused = xdotool(nobody, { PATH, DISPLAY: display })
    expect(refused.code).not.toBe(0)
    expect(refused.err).toContain('Authorization required')
  })

  test('a process of this user without the cookie is refused too; with it, it gets in', () => {
    const refused = xdotool([], { PATH, DISPLAY: display })
    expect(refused.code).not.toBe(0)
    expect(refused.err).toContain('Authorization required')
    const cookie = desktopOf(server.running.gantry).clientEnv()
    expect(cookie.DISPLAY).toBe(display)
    const admitted = xdotool([], { PATH, ...cookie })
    expect(admitted.code).toBe(0)
    expect(admitted.out).toContain('X=')
  })

  test('the cookie file is private to the server, under DATA_DIR beside the desktop ledger', () => {
    const file = desktopOf(server.running.gantry).xauthority
    expect(file.startsWith(join(server.dataDir, 'vnc-processes'))).toBe(true)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(statSync(dirname(file)).mode & 0o777).toBe(0o700)
    expect(readdirSync(dirname(file)).sort()).toEqual(['Xauthority', 'passwd'])
  })

  test('Gantry’s own clients still work: the computer tool and a VNC session through the bridge', async () => {
    const computer = server.running.gantry.tools.get('computer')!
    const ctx = { gantry: server.running.gantry, user: admin, signal: new AbortController().signal }
    const moved = await computer.run({ action: 'mouse_move', x: 77, y: 66 }, ctx as never)
    expect(moved.isError).toBeFalsy()
    const shot = await computer.run({ action: 'screenshot' }, ctx as never)
    expect(shot.isError).toBeFalsy()
    expect(shot.images).toHaveLength(1)
    const cookie = desktopOf(server.running.gantry).clientEnv()
    expect(xdotool([], { PATH, ...cookie }).out).toContain('X=77\nY=66')

    const bridge = `${server.url.replace('http', 'ws')}/vnc/websockify`
    const session = await rfbHandshake(bridge, { authorization: `Bearer ${ADMIN_KEY}` }, password)
    expect(session.securityResult).toBe(0)
    sendPointer(session.socket, 123, 45)
    const until = Date.now() + 5000
    while (!xdotool([], { PATH, ...cookie }).out.includes('X=123\n') && Date.now() < until)
      await Bun.sleep(50)
    expect(xdotool([], { PATH, ...cookie }).out).toContain('X=123\nY=45')
    session.socket.close()
  })
})
