/** Every bad input to /mcp gets a JSON-RPC error, an isError result or a 4xx that says what is wrong: never 500 or a hang. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { ADMIN_KEY, createUserKey, startTestServer, type TestServer } from '../../test/helpers.ts'
import { connectMcp, jsonOf, postMcp, rpcMessagesOf, textOf } from './testing.ts'

const LIMIT = 64 * 1024
let server: TestServer
let admin: Client
let bob: Client

beforeAll(async () => {
  server = await startTestServer({ BODY_LIMIT_BYTES: String(LIMIT) })
  admin = (await connectMcp(server.url)).client
  bob = (await connectMcp(server.url, { key: (await createUserKey(server, 'bob-mcp')).key })).client
}, 60_000)
afterAll(async () => {
  await admin?.close()
  await bob?.close()
  await server?.stop()
}, 30_000)

const rpc = (method: string, params: unknown = {}, id: number | string = 1) =>
  JSON.stringify({ jsonrpc: '2.0', id, method, params })
const initialize = rpc('initialize', {
  protocolVersion: '2025-06-18',
  capabilities: {},
  clientInfo: { name: 'raw', version: '1' },
})

describe('the door: credentials, origin, methods', () => {
  test('no key, a wrong key: 401 with WWW-Authenticate', async () => {
    for (const headers of [{ authorization: '' }, { authorization: 'Bearer gk_nope_wrong' }]) {
      const res = await postMcp(server.url, initialize, headers)
      expect(res.status).toBe(401)
      expect(res.headers.get('www-authenticate')).toStartWith('Bearer')
      expect((await res.json()).message).toContain('Authorization: Bearer')
    }
    const get = await fetch(`${server.url}/mcp`, { headers: { accept: 'text/event-stream' } })
    expect(get.status).toBe(401)
  })

  test('a login cookie is not enough: MCP takes API keys', async () => {
    const login = await fetch(`${server.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ api_key: ADMIN_KEY }),
    })
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!
    const res = await postMcp(server.url, initialize, { authorization: '', cookie, origin: server.url })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toStartWith('Bearer')
  })

  test('a foreign Origin is refused with 403; our own is served', async () => {
    const foreign = await postMcp(server.url, initialize, { origin: 'https://evil.example' })
    expect(foreign.status).toBe(403)
    expect((await foreign.json()).message).toContain('https://evil.example')
    const own = await postMcp(server.url, initialize, { origin: server.url })
    expect(own.status).toBe(200)
    expect((await rpcMessagesOf(own))[0].result.serverInfo.name).toBe('gantry')
  })

  test('initialize hands out a session id (for cancellations); GET has no stream (405); DELETE is a no-op', async () => {
    const init = await postMcp(server.url, initialize)
    expect(init.headers.get('mcp-session-id')).toMatch(/^mcp-[\w-]{20,}$/)
    await init.text()
    const get = await fetch(`${server.url}/mcp`, {
      headers: { authorization: `Bearer ${ADMIN_KEY}`, accept: 'text/event-stream' },
    })
    expect(get.status).toBe(405)
    expect(get.headers.get('allow')).toBe('POST, DELETE')
    expect((await get.json()).error.message).toContain('POST')
    const del = await fetch(`${server.url}/mcp`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    })
    expect(del.status).toBe(204)
  })
})

describe('the envelope: bodies and JSON-RPC', () => {
  test('malformed JSON: 400 with a JSON-RPC parse error', async () => {
    const res = await postMcp(server.url, '{"jsonrpc": "2.0", "id": 1, "method": ')
    expect(res.status).toBe(400)
    const body = await res.json()
    expect(body).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32700 } })
    expect(body.error.message).toContain('not valid JSON')
  })

  test('JSON that is not a JSON-RPC message: 400 with a JSON-RPC error', async () => {
    const res = await postMcp(server.url, JSON.stringify({ hello: 'world' }))
    expect(res.status).toBe(400)
    expect((await res.json()).error.message).toContain('JSON-RPC')
  })

  test('wrong Accept (406) and a body that is not JSON (415)', async () => {
    const accept = await postMcp(server.url, initialize, { accept: 'application/json' })
    expect(accept.status).toBe(406)
    expect((await accept.json()).error.message).toContain('text/event-stream')
    const type = await postMcp(server.url, initialize, { 'content-type': 'text/plain' })
    expect(type.status).toBe(415)
  })

  test('a body over BODY_LIMIT_BYTES: 413, announced or streamed', async () => {
    const big = rpc('tools/call', { name: 'get_task', arguments: { task_id: 'x'.repeat(LIMIT) } })
    const declared = await postMcp(server.url, big)
    expect(declared.status).toBe(413)
    expect((await declared.json()).error).toBe('payload_too_large')
    const chunks = [big.slice(0, 1000), big.slice(1000)]
    const streamed = await postMcp(
      server.url,
      new ReadableStream({
        pull(controller) {
          const next = chunks.shift()
          if (next) controller.enqueue(new TextEncoder().encode(next))
          else controller.close()
        },
      }) as any,
    )
    expect(streamed.status).toBe(413)
  })

  test('an unknown method: JSON-RPC "method not found"', async () => {
    await expect(admin.request({ method: 'tasks/teleport', params: {} } as any, {} as any)).rejects.toThrow(
      /Method not found/,
    )
    const raw = await rpcMessagesOf(
      await postMcp(server.url, rpc('tasks/teleport'), { 'mcp-protocol-version': '2025-06-18' }),
    )
    expect(raw[0].error.code).toBe(-32601)
  })
})

describe('the tools: names, arguments, ownership', () => {
  test('an unknown tool: an error naming it', async () => {
    const result = await admin.callTool({ name: 'make_coffee', arguments: {} })
    expect(result.isError).toBe(true)
    expect(textOf(result)).toContain('Tool make_coffee not found')
  })

  test('arguments that fail the schema: an error naming the argument', async () => {
    const missing = await admin.callTool({ name: 'start_coding_task', arguments: {} })
    expect(missing.isError).toBe(true)
    expect(textOf(missing)).toContain('prompt')
    const range = await admin.callTool({
      name: 'start_coding_task',
      arguments: { prompt: 'x', max_iterations: 0 },
    })
    expect(range.isError).toBe(true)
    expect(textOf(range)).toContain('max_iterations')
    const blank = await admin.callTool({ name: 'start_coding_task', arguments: { prompt: '   ' } })
    expect(blank.isError).toBe(true)
    expect(textOf(blank)).toContain('prompt must not be blank')
    const registry = await admin.callTool({ name: 'computer', arguments: { action: 'dance' } })
    expect(registry.isError).toBe(true)
    expect(textOf(registry)).toContain('action')
  })

  test("another user's task is 'no task' to every tool and resource", async () => {
    const mine = jsonOf(
      await admin.callTool({ name: 'start_coding_task', arguments: { prompt: 'Admin only' } }),
    )
    const id = mine.task_id as string
    for (const [name, args] of [
      ['get_task', { task_id: id }],
      ['get_task_results', { task_id: id }],
      ['intervene_in_task', { task_id: id, guidance: 'mine now' }],
      ['cancel_task', { task_id: id }],
      ['get_task', { task_id: 'task-doesnotexist' }],
    ] as const) {
      const result = await bob.callTool({ name, arguments: args })
      expect(result.isError).toBe(true)
      expect(textOf(result)).toBe(`No task ${args.task_id}: it does not exist or is not yours.`)
    }
    await expect(bob.readResource({ uri: `gantry://tasks/${id}/results` })).rejects.toThrow(`No task ${id}`)
    const listed = jsonOf(await bob.callTool({ name: 'list_tasks', arguments: {} }))
    expect(listed.tasks.map((t: any) => t.task_id)).not.toContain(id)
    // The owner still has it.
    const owner = jsonOf(await admin.callTool({ name: 'get_task', arguments: { task_id: id } }))
    expect(owner).toMatchObject({ task_id: id, prompt: 'Admin only' })
  })

  test('an unknown chat agent: the valid names', async () => {
    const result = await bob.callTool({ name: 'chat', arguments: { message: 'hi', agent: 'wizard' } })
    expect(result.isError).toBe(true)
    expect(textOf(result)).toContain('Unknown agent "wizard". Valid agents: assistant')
  })
})
