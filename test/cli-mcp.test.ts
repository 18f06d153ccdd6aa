import { afterAll, beforeAll, expect, test } from 'bun:test'
import { symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { GANTRY_BIN } from '../src/cli/gantry/testing.ts'
import { ADMIN_KEY, ROOT, startTestServer, type TestServer, tempDir } from './helpers.ts'

// `gantry mcp` as Claude Desktop starts it: a local command speaking MCP on stdio, relaying to /mcp.

let server: TestServer
beforeAll(async () => {
  const plugins = tempDir('gantry-cli-mcp-plugins-')
  for (const name of ['websocket', 'logs-stream', 'tasks', 'sessions', 'mcp'])
    symlinkSync(join(ROOT, 'plugins', name), join(plugins, name))
  server = await startTestServer({ PLUGINS_DIR: plugins })
}, 30_000)
afterAll(() => server.stop(), 30_000)

test('gantry mcp: an MCP client over stdio initializes and lists the server’s tools', async () => {
  const home = tempDir('gantry-cli-home-')
  const transport = new StdioClientTransport({
    command: 'node',
    args: [GANTRY_BIN, 'mcp'],
    env: { PATH: process.env.PATH ?? '', HOME: home, GANTRY_URL: server.url, GANTRY_API_KEY: ADMIN_KEY },
    stderr: 'pipe',
  })
  const client = new Client({ name: 'cli-test', version: '1.0.0' })
  await client.connect(transport)
  try {
    expect(client.getServerVersion()?.name).toBe('gantry')
    expect((await client.listTools()).tools.map((t) => t.name)).toContain('start_coding_task')
  } finally {
    await client.close()
  }
}, 30_000)
