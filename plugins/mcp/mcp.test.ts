import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { createUserKey, startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'
import { planReply, routeByGoal, straight, waitForEvent } from '../tasks/testing.ts'
import type { CancelBoard } from './cancel.ts'
import { connectMcp, jsonOf, postMcp, textOf } from './testing.ts'

let mock: MockOllama
let server: TestServer
let model: ReturnType<typeof routeByGoal>
let client: Client

beforeAll(async () => {
  mock = await startMockOllama()
  model = routeByGoal(mock)
  server = await startTestServer({
    OLLAMA_HOST: mock.url,
    OLLAMA_MODEL: 'llama3.2',
    SANDBOX_TIMEOUT_MS: '15000',
  })
  client = (await connectMcp(server.url)).client
}, 60_000)
afterAll(async () => {
  await client?.close()
  await server?.stop()
  await mock?.stop()
}, 30_000)

const OWN_TOOLS = [
  'start_coding_task',
  'get_task',
  'get_task_results',
  'list_tasks',
  'intervene_in_task',
  'cancel_task',
  'chat',
  'list_agents',
]

describe('discovery', () => {
  test('initialize names the server and says what it is for', () => {
    expect(client.getServerVersion()).toMatchObject({ name: 'gantry' })
    expect(client.getServerCapabilities()).toMatchObject({ tools: {}, resources: {} })
    expect(client.getInstructions()).toContain('start_coding_task')
  })

  test('tools: the task and chat tools with schemas, and the registry tools the caller may use', async () => {
    const { tools } = await client.listTools()
    const names = tools.map((t) => t.name)
    for (const name of OWN_TOOLS) expect(names).toContain(name)
    // list_my_tasks comes from the tasks plugin's registry entry; computer from vnc (admins may use the desktop).
    expect(names).toContain('list_my_tasks')
    expect(names).toContain('computer')
    expect(new Set(names).size).toBe(names.length)
    const start = tools.find((t) => t.name === 'start_coding_task')!
    expect(start.description!.length).toBeGreaterThan(200)
    expect(start.inputSchema.required).toEqual(['prompt'])
    expect(Object.keys(start.inputSchema.properties!)).toEqual([
      'prompt',
      'answers',
      'max_iterations',
      'model',
      'wait',
    ])
    const computer = tools.find((t) => t.name === 'computer')!
    expect(computer.inputSchema.required).toEqual(['action'])
  })

  test('a user outside VNC_ALLOWED_ROLES is not offered the desktop', async () => {
    const carol = await createUserKey(server, 'carol-tools')
    const { client: theirs } = await connectMcp(server.url, { key: carol.key })
    const names = (await theirs.listTools()).tools.map((t) => t.name)
    expect(names).toContain('start_coding_task')
    expect(names).not.toContain('computer')
    const refused = await theirs.callTool({ name: 'computer', arguments: { action: 'screenshot' } })
    expect(refused.isError).toBe(true)
    expect(textOf(refused)).toContain('computer')
    await theirs.close()
  })

  test('resources are listed as templates', async () => {
    const { resourceTemplates } = await client.listResourceTemplates()
    expect(resourceTemplates.map((r) => r.uriTemplate).sort()).toEqual([
      'gantry://tasks/{id}',
      'gantry://tasks/{id}/log',
      'gantry://tasks/{id}/results',
    ])
  })
})

describe('coding tasks', () => {
  test('start with wait: ordered progress to completion, then the results, also as resources', async () => {
    const goal = 'Build a tiny statistics library over MCP'
    model.on(goal, straight(['mathutil', 'stats']))
    const progress: { progress: number; total?: number; message?: string }[] = []
    const result = await client.callTool(
      { name: 'start_coding_task', arguments: { prompt: goal, wait: true } },
      undefined,
      { onprogress: (p) => progress.push(p), timeout: 60_000, resetTimeoutOnProgress: true },
    )
    expect(result.isError).toBeFalsy()
    const done = jsonOf(result)
    expect(done.status).toBe('completed')
    expect(done.modules.map((m: any) => m.name)).toEqual(['mathutil.ts', 'stats.ts'])
    expect(done.modules[0].code).toContain('export const add')
    expect(done.modules[0].tests).toContain("test('adds'")
    expect(done.modules[0].quality_score).toBe(1)
    expect(done.modules[0].test_report.passed).toBe(2)

    const values = progress.map((p) => p.progress)
    for (let i = 1; i < values.length; i++) expect(values[i]!).toBeGreaterThan(values[i - 1]!)
    expect(progress.at(-1)).toMatchObject({ progress: 2, total: 2 })
    const messages = progress.map((p) => p.message)
    expect(messages[0]).toStartWith('Task started')
    expect(messages).toContain('Planned 2 modules: mathutil.ts, stats.ts')
    expect(messages.indexOf('Writing mathutil.ts (module 1 of 2)')).toBeLessThan(
      messages.indexOf('Writing stats.ts (module 2 of 2)'),
    )
    expect(
      progress.filter((p) => Number.isInteger(p.progress) && p.progress > 0).map((p) => p.progress),
    ).toEqual([1, 2])

    const id = done.task_id as string
    const status = await client.readResource({ uri: `gantry://tasks/${id}` })
    expect(JSON.parse((status.contents[0] as any).text)).toMatchObject({ task_id: id, status: 'completed' })
    const results = await client.readResource({ uri: `gantry://tasks/${id}/results` })
    expect(JSON.parse((results.contents[0] as any).text).modules[1].code).toContain('export const sum')
    const log = (await client.readResource({ uri: `gantry://tasks/${id}/log` })).contents[0] as any
    expect(log.mimeType).toBe('text/plain')
    expect(log.text).toContain('[INFO] Task started')
    const listed = await client.listResources()
    expect(listed.resources.map((r) => r.uri)).toContain(`gantry://tasks/${id}`)
  }, 60_000)

  test('start without wait answers at once with the id and URLs; get, list, steer, results, cancel', async () => {
    const goal = 'Build a slow adder over MCP'
    model.on(goal, ({ step }) =>
      step === 'plan' ? { content: planReply(['mathutil']), delayMs: 400 } : { hang: true },
    )
    const started = jsonOf(await client.callTool({ name: 'start_coding_task', arguments: { prompt: goal } }))
    expect(started.task_id).toStartWith('task-')
    expect(started.status).toBe('queued')
    expect(started.status_url).toBe(`${server.url}/tasks/${started.task_id}`)
    expect(started.websocket_url).toBe(`${server.url.replace('http', 'ws')}/ws/${started.task_id}`)
    const id = started.task_id as string

    const got = jsonOf(await client.callTool({ name: 'get_task', arguments: { task_id: id } }))
    expect(got).toMatchObject({ task_id: id, prompt: goal })
    const list = jsonOf(await client.callTool({ name: 'list_tasks', arguments: { limit: 5 } }))
    expect(list.tasks[0].task_id).toBe(id)
    const steer = await client.callTool({
      name: 'intervene_in_task',
      arguments: { task_id: id, guidance: 'Keep it tiny' },
    })
    expect(jsonOf(steer)).toMatchObject({ task_id: id, accepted: true })
    await waitForEvent(server, id, 'MODULE_STARTED')
    const partial = jsonOf(await client.callTool({ name: 'get_task_results', arguments: { task_id: id } }))
    expect(partial.modules).toMatchObject([{ name: 'mathutil.ts', status: 'running', code: null }])
    const cancelled = jsonOf(await client.callTool({ name: 'cancel_task', arguments: { task_id: id } }))
    expect(cancelled.status).toBe('cancelling')
    await waitFor(
      async () =>
        jsonOf(await client.callTool({ name: 'get_task', arguments: { task_id: id } })).status ===
        'cancelled',
      10_000,
      'the task to be cancelled',
    )
    const again = await client.callTool({ name: 'cancel_task', arguments: { task_id: id } })
    expect(again.isError).toBe(true)
    expect(textOf(again)).toContain('already')
  }, 30_000)

  test('cancelling a wait stops the waiting only: the task goes on and completes', async () => {
    const goal = 'Build an adder slowly over MCP'
    model.on(goal, ({ step, module }) =>
      step === 'plan'
        ? { content: planReply(['mathutil']) }
        : { ...straight(['mathutil'])({ step, module, n: 1 } as any), delayMs: 4000 },
    )
    const board = server.running.gantry.state.get('mcp') as CancelBoard
    const aborter = new AbortController()
    const progress: string[] = []
    const call = client.callTool(
      { name: 'start_coding_task', arguments: { prompt: goal, wait: true } },
      undefined,
      {
        signal: aborter.signal,
        onprogress: (p) => {
          progress.push(p.message ?? '')
          if (p.message?.startsWith('Writing')) aborter.abort('enough')
        },
      },
    )
    await expect(call).rejects.toThrow()
    // The server let go of the call (the cancellation found it through the Postgres channel)…
    await waitFor(() => board.watching === 0, 2000, 'the wait to stop')
    const tasks = jsonOf(await client.callTool({ name: 'list_tasks', arguments: { limit: 1 } }))
    const id = tasks.tasks[0].task_id as string
    expect(tasks.tasks[0].prompt).toBe(goal)
    expect(['queued', 'running']).toContain(tasks.tasks[0].status)
    // …and the task, durable, finished on its own.
    await waitFor(
      async () =>
        jsonOf(await client.callTool({ name: 'get_task', arguments: { task_id: id } })).status ===
        'completed',
      20_000,
      'the task to complete',
    )
  }, 30_000)
})

test('a client that disconnects mid-wait: the server stops following, the task completes', async () => {
  const goal = 'Build an adder for a client that leaves'
  model.on(goal, ({ step, module }) =>
    step === 'plan'
      ? { content: planReply(['mathutil']) }
      : { ...straight(['mathutil'])({ step, module, n: 1 } as any), delayMs: 4000 },
  )
  const board = server.running.gantry.state.get('mcp') as CancelBoard
  const leave = new AbortController()
  const res = await postMcp(
    server.url,
    JSON.stringify({
      jsonrpc: '2.0',
      id: 41,
      method: 'tools/call',
      params: {
        name: 'start_coding_task',
        arguments: { prompt: goal, wait: true },
        _meta: { progressToken: 'p' },
      },
    }),
    {},
    leave.signal,
  )
  const reader = res.body!.getReader()
  let seen = ''
  while (!seen.includes('Writing mathutil.ts')) seen += new TextDecoder().decode((await reader.read()).value)
  expect(board.watching).toBe(1)
  leave.abort()
  await waitFor(() => board.watching === 0, 2000, 'the server to notice the client left')
  const id = jsonOf(await client.callTool({ name: 'list_tasks', arguments: { limit: 1 } })).tasks[0].task_id
  await waitFor(
    async () =>
      jsonOf(await client.callTool({ name: 'get_task', arguments: { task_id: id } })).status === 'completed',
    20_000,
    'the task to complete',
  )
}, 30_000)

describe('chat and agents', () => {
  test('chat answers with tool calls summarized and keeps the history in its session', async () => {
    const question = 'Which tasks do I have, MCP?'
    const follow = 'And one more thing, MCP'
    let followSawHistory = false
    model.on(question, ({ request }) => {
      const messages = request.body.messages as { role: string; content: string }[]
      const lastUser = messages.filter((m) => m.role === 'user').at(-1)!.content
      if (lastUser === follow) {
        followSawHistory = messages.some((m) => m.content === question)
        return { content: 'Sure.' }
      }
      return messages.at(-1)!.role === 'tool'
        ? { content: 'You have tasks.' }
        : { content: '', tool_calls: [{ name: 'list_my_tasks', arguments: {} }] }
    })
    // A user of their own, whose task list (the tool's answer) holds no other test's goal.
    const dave = await createUserKey(server, 'dave-chat')
    const { client: daves } = await connectMcp(server.url, { key: dave.key })
    const first = await daves.callTool({ name: 'chat', arguments: { message: question, agent: 'coder' } })
    expect(first.isError).toBeFalsy()
    const answer = textOf(first)
    expect(answer).toStartWith('You have tasks.')
    expect(answer).toContain('- list_my_tasks({}) → ok: []')
    const session = /session: (sess-\S+)/.exec(answer)![1]!

    const second = await daves.callTool({ name: 'chat', arguments: { message: follow, session } })
    expect(textOf(second)).toStartWith('Sure.')
    expect(followSawHistory).toBe(true)
    const history = await server.api(`/api/sessions/${session}/messages`, { key: dave.key })
    expect(history.body.messages.map((m: any) => [m.role, m.content])).toEqual([
      ['user', question],
      ['assistant', 'You have tasks.'],
      ['user', follow],
      ['assistant', 'Sure.'],
    ])
    expect(history.body.messages[1].tool_calls[0].name).toBe('list_my_tasks')
    // Someone else's session is not theirs to continue (admins aside).
    const erin = await createUserKey(server, 'erin-chat')
    const { client: erins } = await connectMcp(server.url, { key: erin.key })
    const stranger = await erins.callTool({ name: 'chat', arguments: { message: 'hi', session } })
    await erins.close()
    expect(stranger.isError).toBe(true)
    expect(textOf(stranger)).toContain(`Session ${session} not found`)
    await daves.close()
  }, 30_000)

  test('list_agents lists the built-in and plugin agents', async () => {
    const agents = jsonOf(await client.callTool({ name: 'list_agents', arguments: {} }))
    const names = agents.map((a: any) => a.name)
    expect(names).toEqual(expect.arrayContaining(['assistant', 'coder', 'researcher', 'desktop']))
  })
})
