/**
 * The core tool registry over MCP: a plugin dropped into the plugins folder shows its tool to MCP clients with no
 * edit anywhere, and the desktop's `computer` tool answers a screenshot as image content.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { ROOT, startTestServer, type TestServer, tempDir } from '../../test/helpers.ts'
import { connectMcp, textOf } from './testing.ts'

/** A plugin of the kind a user drops in: it registers one tool in onStart and removes it in onStop. */
const ECHO_PLUGIN = `
import { Elysia } from '${ROOT}/node_modules/elysia'
import { gantryOf } from '${ROOT}/src/core/context.ts'

let off
export default new Elysia({ name: 'echo' })
  .onStart((app) => {
    off = gantryOf(app).tools.register({
      name: 'echo_shout',
      description: 'Repeats the text in capitals.',
      parameters: { type: 'object', properties: { text: { type: 'string', description: 'What to shout' } }, required: ['text'] },
      async run(args, ctx) {
        return { content: \`\${String(args.text).toUpperCase()} (for \${ctx.user.userName})\` }
      },
    })
  })
  .onStop(() => off?.())
`

let server: TestServer
let client: Client

beforeAll(async () => {
  const plugins = tempDir('gantry-plugins-')
  for (const name of ['tasks', 'websocket', 'sessions', 'vnc', 'mcp'])
    symlinkSync(join(ROOT, 'plugins', name), join(plugins, name))
  mkdirSync(join(plugins, 'echo'))
  writeFileSync(join(plugins, 'echo', 'index.ts'), ECHO_PLUGIN)
  server = await startTestServer({ PLUGINS_DIR: plugins })
  client = (await connectMcp(server.url)).client
}, 60_000)
afterAll(async () => {
  await client?.close()
  await server?.stop()
}, 30_000)

describe('registry tools over MCP', () => {
  test("a dropped-in plugin's tool is listed with its schema and runs as the caller", async () => {
    const tool = (await client.listTools()).tools.find((t) => t.name === 'echo_shout')
    expect(tool?.description).toBe('Repeats the text in capitals.')
    expect(tool?.inputSchema.required).toEqual(['text'])
    const result = await client.callTool({ name: 'echo_shout', arguments: { text: 'hello' } })
    expect(textOf(result)).toBe('HELLO (for admin)')
    const bad = await client.callTool({ name: 'echo_shout', arguments: {} })
    expect(bad.isError).toBe(true)
    expect(textOf(bad)).toContain('text')
  })

  test.skipIf(!Bun.which('Xvfb') || !Bun.which('import'))(
    'computer: a screenshot comes back as image content',
    async () => {
      const connect = await server.api('/api/vnc/connect', {
        method: 'POST',
        json: { width: 640, height: 480 },
      })
      expect(connect.status).toBe(200)
      try {
        const shot = await client.callTool({ name: 'computer', arguments: { action: 'screenshot' } })
        expect(shot.isError).toBeFalsy()
        const [caption, image] = shot.content as any[]
        expect(caption.text).toContain('640x480')
        expect(image).toMatchObject({ type: 'image', mimeType: 'image/png' })
        const png = Buffer.from(image.data, 'base64')
        expect(png.subarray(1, 4).toString('latin1')).toBe('PNG')
        expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([640, 480])
      } finally {
        await server.api('/api/vnc/disconnect', { method: 'POST', json: {} })
      }
    },
    30_000,
  )
})
