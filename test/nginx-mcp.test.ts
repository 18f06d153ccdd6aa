/**
 * MCP through the shipped nginx.conf and a real nginx: the SDK's client over HTTPS, progress streamed while the
 * task runs, a cancelled wait, the door's refusals. On Postgres, two instances stand behind nginx, which
 * spreads the client's requests over both.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import type { CancelBoard } from '../plugins/mcp/cancel.ts'
import { connectMcp, jsonOf, textOf } from '../plugins/mcp/testing.ts'
import { planReply, routeByGoal, straight } from '../plugins/tasks/testing.ts'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import {
  ADMIN_KEY,
  freshDatabase,
  PG_BASE_URL,
  ROOT,
  startTestServer,
  type TestServer,
  tempDir,
  waitFor,
} from './helpers.ts'
import { HAVE_NGINX, type RunningNginx, startNginx } from './nginx-harness.ts'

describe.skipIf(!HAVE_NGINX)('MCP behind nginx', () => {
  const dir = tempDir('gantry-nginx-mcp-')
  let mock: MockOllama
  let model: ReturnType<typeof routeByGoal>
  let servers: TestServer[] = []
  let drop = async () => {}
  let nginx: RunningNginx
  let client: Client
  const viaNginx = ((url: string | URL | Request, init?: RequestInit) =>
    fetch(url, { ...init, tls: { ca: nginx.ca } } as RequestInit)) as typeof fetch
  const served = () => servers.map((s) => s.log.records().filter((r) => r.path === '/mcp').length)

  beforeAll(async () => {
    mock = await startMockOllama()
    model = routeByGoal(mock)
    const env = { OLLAMA_HOST: mock.url, OLLAMA_MODEL: 'llama3.2', SANDBOX_TIMEOUT_MS: '15000' }
    if (PG_BASE_URL) {
      const database = await freshDatabase()
      drop = database.drop
      for (let i = 0; i < 2; i++) servers.push(await startTestServer(env, { database, keepDatabase: true }))
    } else servers = [await startTestServer(env)]
    nginx = await startNginx(
      dir,
      servers.map((s) => s.running.server.port!),
    )
    client = (await connectMcp(nginx.https, { fetch: viaNginx })).client
  }, 60_000)
  afterAll(async () => {
    await client?.close()
    await nginx?.stop()
    for (const s of servers) await s.stop()
    await drop()
    await mock?.stop()
    rmSync(dir, { recursive: true, force: true })
  }, 30_000)

  test('nginx.conf: /mcp streams unbuffered with hour-long reads and inherits the forwarded headers', () => {
    const conf = readFileSync(join(ROOT, 'nginx.conf'), 'utf8')
    const block = /location = \/mcp \{([^}]*)\}/.exec(conf)?.[1] ?? ''
    expect(block).toContain('proxy_buffering off;')
    expect(block).toContain('proxy_read_timeout 3600s;')
    expect(block).toContain('proxy_pass http://gantry;')
    expect(block).not.toContain('proxy_set_header')
  })

  test('a waited task: progress arrives while it runs (unbuffered), then the results; URLs name the proxy', async () => {
    const goal = 'Build statistics through nginx'
    model.on(goal, ({ step, module }) =>
      step === 'plan'
        ? { content: planReply(['mathutil', 'stats']) }
        : { ...straight(['mathutil', 'stats'])({ step, module, n: 1 } as any), delayMs: 300 },
    )
    const seenWhileRunning: Promise<string>[] = []
    const progress: number[] = []
    const result = await client.callTool(
      { name: 'start_coding_task', arguments: { prompt: goal, wait: true } },
      undefined,
      {
        timeout: 60_000,
        onprogress: (p) => {
          progress.push(p.progress)
          // Buffered, every notification would arrive with the result, when the task is long complete.
          if (p.message === 'Writing mathutil.ts (module 1 of 2)')
            seenWhileRunning.push(
              servers[0]!.api('/tasks?limit=1').then((r) => r.body.tasks[0].status as string),
            )
        },
      },
    )
    const done = jsonOf(result)
    expect(done.status).toBe('completed')
    expect(progress.at(-1)).toBe(2)
    expect(await Promise.all(seenWhileRunning)).toEqual(['running'])
    const got = jsonOf(await client.callTool({ name: 'get_task', arguments: { task_id: done.task_id } }))
    expect(got.status_url).toBe(`${nginx.https}/tasks/${done.task_id}`)
    expect(got.websocket_url).toBe(`${nginx.https.replace('https', 'wss')}/ws/${done.task_id}`)
    const results = await client.readResource({ uri: `gantry://tasks/${done.task_id}/results` })
    expect(JSON.parse((results.contents[0] as any).text).modules).toHaveLength(2)
    if (servers.length === 2) expect(served().every((n) => n > 0)).toBe(true)
  }, 60_000)

  test('a cancelled wait lets go on the instance that held it; the task completes', async () => {
    const goal = 'Build an adder slowly through nginx'
    model.on(goal, ({ step, module }) =>
      step === 'plan'
        ? { content: planReply(['mathutil']) }
        : { ...straight(['mathutil'])({ step, module, n: 1 } as any), delayMs: 4000 },
    )
    const aborter = new AbortController()
    const call = client.callTool(
      { name: 'start_coding_task', arguments: { prompt: goal, wait: true } },
      undefined,
      {
        signal: aborter.signal,
        onprogress: (p) => {
          if (p.message?.startsWith('Writing')) aborter.abort('enough')
        },
      },
    )
    await expect(call).rejects.toThrow()
    const boards = servers.map((s) => s.running.gantry.state.get('mcp') as CancelBoard)
    await waitFor(() => boards.every((b) => b.watching === 0), 2000, 'every instance to stop waiting')
    const id = jsonOf(await client.callTool({ name: 'list_tasks', arguments: { limit: 1 } })).tasks[0].task_id
    // Polled gently: nginx lets one address make 20 requests a second.
    await waitFor(
      async () => {
        await Bun.sleep(250)
        const task = jsonOf(await client.callTool({ name: 'get_task', arguments: { task_id: id } }))
        return task.status === 'completed'
      },
      20_000,
      'the task to complete',
    )
  }, 30_000)

  test('the door through nginx: 401 with WWW-Authenticate, a foreign Origin 403, our own Origin served', async () => {
    const init = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    })
    const post = (headers: Record<string, string>, body = init) =>
      nginx.get('/mcp', {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...headers,
        },
        body,
      })
    const anonymous = await post({})
    expect(anonymous.status).toBe(401)
    expect(anonymous.headers.get('www-authenticate')).toStartWith('Bearer')
    const auth = { authorization: `Bearer ${ADMIN_KEY}` }
    const foreign = await post({ ...auth, origin: 'https://evil.example' })
    expect(foreign.status).toBe(403)
    const own = await post({ ...auth, origin: nginx.https })
    expect(own.status).toBe(200)
    expect(await own.text()).toContain('"serverInfo"')
    const malformed = await post(auth, '{"jsonrpc":')
    expect(malformed.status).toBe(400)
    expect((await malformed.json()).error.code).toBe(-32700)
  })

  test('a body over the proxy limit: 413 from nginx in Gantry’s shape', async () => {
    const res = await nginx.get('/mcp', {
      method: 'POST',
      headers: {
        authorization: `Bearer ${ADMIN_KEY}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'ping',
        params: { pad: 'x'.repeat(3 * 1024 * 1024) },
      }),
    })
    expect(res.status).toBe(413)
    expect((await res.json()).error).toBe('payload_too_large')
  })

  test('a bad tool call through nginx is an isError result, not a transport failure', async () => {
    const result = await client.callTool({ name: 'get_task', arguments: { task_id: 'task-elsewhere' } })
    expect(result.isError).toBe(true)
    expect(textOf(result)).toContain('No task task-elsewhere')
  })
})
