import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Principal } from '../../src/core/auth.ts'
import type { ToolContext } from '../../src/core/tools.ts'
import { startTestServer, type TestServer } from '../../test/helpers.ts'
import { desktopOf } from './service.ts'

let server: TestServer
const admin: Principal = {
  userId: 'usr-admin',
  userName: 'admin',
  role: 'admin',
  keyId: null,
  keyName: null,
  via: 'api_key',
}

const ctx = (user = admin): ToolContext => ({
  gantry: server.running.gantry,
  user,
  signal: new AbortController().signal,
})
const computer = () => server.running.gantry.tools.get('computer')!

/** Width and height from a PNG's IHDR chunk (bytes 16-23), after checking the signature. */
function pngSize(png: Buffer): { width: number; height: number } {
  expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a')
  expect(png.subarray(12, 16).toString('latin1')).toBe('IHDR')
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) }
}

async function pointer(display: string): Promise<{ x: number; y: number }> {
  const out = Bun.spawnSync(['xdotool', 'getmouselocation', '--shell'], {
    // The display takes only Gantry's cookie: a test looking from outside borrows it.
    env: { ...process.env, DISPLAY: display, XAUTHORITY: desktopOf(server.running.gantry).xauthority },
  })
  const text = out.stdout.toString()
  return { x: Number(/X=(\d+)/.exec(text)?.[1]), y: Number(/Y=(\d+)/.exec(text)?.[1]) }
}

beforeAll(async () => {
  server = await startTestServer()
}, 60_000)
afterAll(() => server.stop(), 30_000)

describe('the computer tool', () => {
  test('is registered with the desktop agent', () => {
    const tools = server.running.gantry.tools
    expect(computer().parameters.required).toEqual(['action'])
    expect(tools.listAgents().find((a) => a.name === 'desktop')?.tools).toEqual(['computer'])
  })

  test('a screenshot is a PNG of the configured size', async () => {
    const res = await server.api('/api/vnc/connect', { method: 'POST', json: { width: 800, height: 600 } })
    expect(res.status).toBe(200)
    const shot = await computer().run({ action: 'screenshot' }, ctx())
    expect(shot.isError).toBeFalsy()
    expect(shot.images).toHaveLength(1)
    expect(pngSize(Buffer.from(shot.images![0]!, 'base64'))).toEqual({ width: 800, height: 600 })
  })

  test('mouse actions move the real pointer on the plugin’s display', async () => {
    const display = (await server.api('/api/vnc/status')).body.display
    expect((await computer().run({ action: 'mouse_move', x: 123, y: 45 }, ctx())).isError).toBeFalsy()
    expect(await pointer(display)).toEqual({ x: 123, y: 45 })
    expect(
      (await computer().run({ action: 'click', x: 200, y: 100, button: 'right' }, ctx())).isError,
    ).toBeFalsy()
    expect(await pointer(display)).toEqual({ x: 200, y: 100 })
    expect((await computer().run({ action: 'double_click', x: 10, y: 20 }, ctx())).isError).toBeFalsy()
    expect(
      (await computer().run({ action: 'drag', x: 10, y: 20, to_x: 300, to_y: 310 }, ctx())).isError,
    ).toBeFalsy()
    expect(await pointer(display)).toEqual({ x: 300, y: 310 })
    expect(
      (await computer().run({ action: 'scroll', x: 50, y: 60, direction: 'up', amount: 2 }, ctx())).isError,
    ).toBeFalsy()
    expect(await pointer(display)).toEqual({ x: 50, y: 60 })
    expect((await computer().run({ action: 'type', text: '-not an option' }, ctx())).isError).toBeFalsy()
    expect((await computer().run({ action: 'key', key: 'ctrl+a BackSpace' }, ctx())).isError).toBeFalsy()
  })

  test('bad arguments come back as tool errors the model can correct', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ action: 'dance' }, '"action"'],
      [{ action: 'mouse_move', x: 800, y: 1 }, '"x" must be from 0 to 799'],
      [{ action: 'mouse_move', x: 1.5, y: 1 }, '"x" must be an integer'],
      [{ action: 'click', x: 1, y: 1, button: 'thumb' }, '"button"'],
      [{ action: 'drag', to_x: 1, to_y: 1 }, 'start of the drag'],
      [{ action: 'scroll', amount: 0 }, '"amount"'],
      [{ action: 'type', text: '' }, '"text"'],
      [{ action: 'key', key: '--window 1' }, '"key"'],
    ]
    for (const [args, message] of cases) {
      const result = await computer().run(args, ctx())
      expect(result.isError, JSON.stringify(args)).toBe(true)
      expect(result.content).toContain(message)
    }
  })

  test('a user without the desktop permission is refused', async () => {
    const result = await computer().run({ action: 'screenshot' }, ctx({ ...admin, role: 'user' }))
    expect(result.isError).toBe(true)
    expect(result.content).toContain('VNC_ALLOWED_ROLES')
    expect(result.images).toBeUndefined()
  })

  test('on a stopped desktop the tool starts it (the agent needs one)', async () => {
    await server.api('/api/vnc/disconnect', { method: 'POST' })
    const shot = await computer().run({ action: 'screenshot' }, ctx())
    expect(shot.isError).toBeFalsy()
    expect(pngSize(Buffer.from(shot.images![0]!, 'base64'))).toEqual({ width: 1280, height: 800 })
    expect((await server.api('/api/vnc/status')).body.state).toBe('running')
  })
})
