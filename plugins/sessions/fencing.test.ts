/**
 * A chat answer whose job was taken over while the model was answering: the tool call the model asked for is
 * never run by the old attempt (its effect could not be taken back), and nothing more of it reaches the log.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'

let ollama: MockOllama
let server: TestServer

beforeAll(async () => {
  ollama = await startMockOllama()
  server = await startTestServer({ OLLAMA_HOST: ollama.url, OLLAMA_MODEL: 'llama3.2' })
}, 30_000)
afterAll(async () => {
  await server.stop()
  await ollama.stop()
}, 30_000)

test('a tool call that arrives after a takeover is not run, and the old attempt stops', async () => {
  let runs = 0
  const unregister = server.running.gantry.tools.register({
    name: 'fence_probe_tool',
    description: 'Counts its runs',
    parameters: { type: 'object', properties: {} },
    run: async () => {
      runs++
      return { content: 'ran' }
    },
  })
  try {
    const agent = await server.api('/v1/agents', {
      method: 'POST',
      json: { name: 'fence-prober', model: 'llama3.2', tools: ['fence_probe_tool'] },
    })
    expect(agent.status).toBe(201)
    ollama.script(async ({ body }) => {
      if (body.messages.some((m: any) => m.role === 'tool')) return { content: 'The tool ran.' }
      // While the model answers, another instance claims the job (as after this one's lease ran out).
      await server.running.gantry.store.query(
        `update jobs set lease_epoch = lease_epoch + 1, lease_owner = 'another-instance',
                lease_expires_at = now() + interval '1 minute'
          where kind = 'chat' and status = 'running'`,
      )
      return { tool_calls: [{ name: 'fence_probe_tool', arguments: {} }] }
    })
    const session = await server.api('/api/sessions', {
      method: 'POST',
      json: { name: 'fenced', agent: 'fence-prober' },
    })
    const sessionId = session.body.session_id as string
    const chat = await server.api(`/api/sessions/${sessionId}/chat`, {
      method: 'POST',
      json: { message: 'use the probe', agent_name: 'fence-prober' },
    })
    expect(chat.status).toBe(202)
    await waitFor(
      () => server.log.records().some((r) => r.msg === 'job taken over by another attempt; stopping'),
      15_000,
      'the old attempt to stop',
    )
    await Bun.sleep(300) // what the stopped attempt might still do, it has done by now
    expect(runs).toBe(0)
    const events = await server.running.gantry.events.readSince(sessionId, 0)
    const mine = events.filter((e) => (e.data as any)?.message_id === chat.body.assistant_message_id)
    expect(mine.map((e) => e.type)).not.toContain('tool_result')
    expect(mine.map((e) => e.type)).not.toContain('response')
    const [job] = await server.running.gantry.store.query<{ lease_owner: string; status: string }>(
      'select lease_owner, status from jobs where id = $1',
      [chat.body.assistant_message_id],
    )
    // The other attempt's job, untouched: the old one neither finished nor released it.
    expect(job).toEqual({ lease_owner: 'another-instance', status: 'running' })
  } finally {
    unregister()
  }
}, 30_000)
