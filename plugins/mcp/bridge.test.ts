/** The stdio bridge (`bun src/cli/mcp-bridge.ts`, what `gantry mcp` runs) driven by the SDK's StdioClientTransport. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { mcpEndpoint, runMcpBridge } from '../../src/cli/mcp-bridge.ts'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { ADMIN_KEY, ROOT, startTestServer, type TestServer } from '../../test/helpers.ts'
import { routeByGoal, straight } from '../tasks/testing.ts'
import { jsonOf, textOf } from './testing.ts'

let mock: MockOllama
let model: ReturnType<typeof routeByGoal>
let server: TestServer

beforeAll(async () => {
  mock = await startMockOllama()
  model = routeByGoal(mock)
  server = await startTestServer({
    OLLAMA_HOST: mock.url,
    OLLAMA_MODEL: 'llama3.2',
    SANDBOX_TIMEOUT_MS: '15000',
  })
}, 60_000)
afterAll(async () => {
  await server?.stop()
  await mock?.stop()
}, 30_000)

const bridgeProcess = (env: Record<string, string>) =>
  new StdioClientTransport({
    command: process.execPath,
    args: [join(ROOT, 'src/cli/mcp-bridge.ts')],
    env: { PATH: process.env.PATH ?? '', ...env },
    stderr: 'pipe',
  })

describe('the stdio bridge', () => {
  test('mcpEndpoint: a base URL gets /mcp, an explicit path is kept', () => {
    expect(mcpEndpoint('https://gantry.lan').href).toBe('https://gantry.lan/mcp')
    expect(mcpEndpoint('https://gantry.lan/').href).toBe('https://gantry.lan/mcp')
    expect(mcpEndpoint('https://host/gantry/mcp').href).toBe('https://host/gantry/mcp')
  })

  test('a spawned bridge: initialize, tools, a waited task with progress, resources', async () => {
    const goal = 'Build a statistics library through stdio'
    model.on(goal, straight(['mathutil', 'stats']))
    const transport = bridgeProcess({ GANTRY_URL: server.url, GANTRY_API_KEY: ADMIN_KEY })
    const client = new Client({ name: 'stdio-test', version: '1.0.0' })
    await client.connect(transport)
    try {
      expect(client.getServerVersion()?.name).toBe('gantry')
      expect((await client.listTools()).tools.map((t) => t.name)).toContain('start_coding_task')
      const progress: number[] = []
      const done = jsonOf(
        await client.callTool(
          { name: 'start_coding_task', arguments: { prompt: goal, wait: true } },
          undefined,
          {
            onprogress: (p) => progress.push(p.progress),
            timeout: 60_000,
          },
        ),
      )
      expect(done.status).toBe('completed')
      expect(progress.at(-1)).toBe(2)
      const log = await client.readResource({ uri: `gantry://tasks/${done.task_id}/log` })
      expect((log.contents[0] as any).text).toContain('Task started')
      const bad = await client.callTool({ name: 'get_task', arguments: { task_id: 'task-nope' } })
      expect(textOf(bad)).toBe('No task task-nope: it does not exist or is not yours.')
    } finally {
      await client.close()
    }
  }, 60_000)

  test('a wrong key: requests are answered with an error that says why, not left hanging', async () => {
    const transport = bridgeProcess({ GANTRY_URL: server.url, GANTRY_API_KEY: 'gk_wrong_key' })
    const client = new Client({ name: 'stdio-test', version: '1.0.0' })
    await expect(client.connect(transport)).rejects.toThrow(/401|Unauthorized|API key/)
    await client.close()
  }, 20_000)

  test('no GANTRY_URL: exits 2 naming the variables', async () => {
    const run = Bun.spawnSync([process.execPath, join(ROOT, 'src/cli/mcp-bridge.ts')], {
      env: { PATH: process.env.PATH ?? '' },
      stderr: 'pipe',
    })
    expect(run.exitCode).toBe(2)
    expect(run.stderr.toString()).toContain('GANTRY_URL')
  })

  test('in process: runMcpBridge resolves when stdin ends', async () => {
    const stdin = new PassThrough()
    const stdout = new PassThrough()
    const lines: any[] = []
    stdout.on('data', (chunk) => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line))
    })
    const running = runMcpBridge({ url: server.url, key: ADMIN_KEY, stdin, stdout })
    stdin.write(
      `${JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'p', version: '1' } } })}\n`,
    )
    for (let i = 0; i < 200 && !lines.length; i++) await Bun.sleep(10)
    expect(lines[0]).toMatchObject({ id: 7, result: { serverInfo: { name: 'gantry' } } })
    stdin.end()
    await running
  })
})
