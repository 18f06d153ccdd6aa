/**
 * Two instances on one Postgres: an MCP client whose requests land on A, then B, then A… keeps working, and a
 * cancellation sent to one instance stops the call the other one holds. Postgres only (PGlite is one process).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { freshDatabase, PG_BASE_URL, startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'
import { planReply, routeByGoal, straight } from '../tasks/testing.ts'
import type { CancelBoard } from './cancel.ts'
import { connectMcp, jsonOf } from './testing.ts'

let mock: MockOllama
let model: ReturnType<typeof routeByGoal>
let a: TestServer
let b: TestServer
let drop: () => Promise<void>
const hits = { a: 0, b: 0 }

/** Sends each HTTP request to the instance `pick` names, counting where they went. */
const routed = (pick: (body: string, n: number) => 'a' | 'b'): typeof fetch =>
  (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : String(input))
    const body = typeof init?.body === 'string' ? init.body : ''
    const target = pick(body, hits.a + hits.b) === 'a' ? a : b
    hits[target === a ? 'a' : 'b']++
    url.port = new URL(target.url).port
    return fetch(url, init)
  }) as typeof fetch

describe.skipIf(!PG_BASE_URL)('two instances, one Postgres', () => {
  let client: Client

  beforeAll(async () => {
    mock = await startMockOllama()
    model = routeByGoal(mock)
    const database = await freshDatabase()
    drop = database.drop
    const env = { OLLAMA_HOST: mock.url, OLLAMA_MODEL: 'llama3.2', SANDBOX_TIMEOUT_MS: '15000' }
    a = await startTestServer(env, { database, keepDatabase: true })
    b = await startTestServer(env, { database, keepDatabase: true })
    client = (await connectMcp(a.url, { fetch: routed((_body, n) => (n % 2 === 0 ? 'a' : 'b')) })).client
  }, 60_000)
  afterAll(async () => {
    await client?.close()
    await a?.stop()
    await b?.stop()
    await drop?.()
    await mock?.stop()
  }, 30_000)

  test('alternating requests: tools, a waited task with progress, results and resources', async () => {
    const goal = 'Build statistics across two instances'
    model.on(goal, straight(['mathutil', 'stats']))
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
    for (let i = 1; i < progress.length; i++) expect(progress[i]!).toBeGreaterThan(progress[i - 1]!)
    for (let i = 0; i < 4; i++) {
      const got = jsonOf(await client.callTool({ name: 'get_task', arguments: { task_id: done.task_id } }))
      expect(got.status).toBe('completed')
    }
    const results = await client.readResource({ uri: `gantry://tasks/${done.task_id}/results` })
    expect(JSON.parse((results.contents[0] as any).text).modules).toHaveLength(2)
    expect(hits.a).toBeGreaterThan(2)
    expect(hits.b).toBeGreaterThan(2)
  }, 60_000)

  test('a cancellation that lands on the other instance stops the wait; the task goes on', async () => {
    const goal = 'Build an adder across two slow instances'
    model.on(goal, ({ step, module }) =>
      step === 'plan'
        ? { content: planReply(['mathutil']) }
        : { ...straight(['mathutil'])({ step, module, n: 1 } as any), delayMs: 4000 },
    )
    // The call goes to A; its cancellation (and everything else) to B.
    const { client: split } = await connectMcp(a.url, {
      fetch: routed((body) => (body.includes('"tools/call"') ? 'a' : 'b')),
    })
    const boardA = a.running.gantry.state.get('mcp') as CancelBoard
    const aborter = new AbortController()
    const call = split.callTool(
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
    await waitFor(() => boardA.watching === 0, 2000, 'instance A to stop waiting')
    const list = jsonOf(await client.callTool({ name: 'list_tasks', arguments: { limit: 1 } }))
    const id = list.tasks[0].task_id as string
    expect(list.tasks[0].prompt).toBe(goal)
    await waitFor(
      async () =>
        jsonOf(await client.callTool({ name: 'get_task', arguments: { task_id: id } })).status ===
        'completed',
      20_000,
      'the task to complete',
    )
    await split.close()
  }, 30_000)
})
