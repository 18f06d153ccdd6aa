/** The tasks plugin's LOG events as the logs-stream plugin shows them: the two plugins meet only in the event log. */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from './helpers.ts'

let ollama: MockOllama
let server: TestServer
beforeAll(async () => {
  // A plan with a module name the workflow refuses: the task logs, warns and fails fast.
  ollama = await startMockOllama()
  ollama.script(() => ({
    content: JSON.stringify({
      modules: [{ name: 'Not A File Name', purpose: 'x', interface: '' }],
      estimated_iterations: 1,
    }),
  }))
  server = await startTestServer({ OLLAMA_HOST: ollama.url, OLLAMA_MODEL: 'llama3.2', CODE_EXECUTION: 'off' })
}, 60_000)
afterAll(async () => {
  await server?.stop()
  await ollama?.stop()
})

test("a task's log lines reach GET /tasks/:id/logs and the SSE log stream, with level filters", async () => {
  const created = await server.api('/tasks', { method: 'POST', json: { prompt: 'Build an email validator' } })
  expect(created.status).toBe(201)
  const id = created.body.task_id
  await waitFor(
    async () => (await server.api(`/tasks/${id}`)).body.status === 'failed',
    20_000,
    'the task to end',
  )

  const all = await server.api(`/tasks/${id}/logs`)
  expect(all.status).toBe(200)
  const messages = all.body.logs.map((l: { message: string }) => l.message)
  expect(messages).toContain('Task started')
  expect(all.body.logs.find((l: { message: string }) => l.message === 'Task started').level).toBe('info')

  const warnings = await server.api(`/tasks/${id}/logs?level=warn`)
  expect(warnings.body.logs.length).toBeGreaterThan(0)
  for (const l of warnings.body.logs) expect(['warn', 'error']).toContain(l.level)

  const sse = await fetch(`${server.url}/tasks/${id}/logs/stream`, {
    headers: { authorization: `Bearer ${ADMIN_KEY}` },
  })
  const text = await sse.text()
  expect(text).toContain('data: [INFO] Task started')
  expect(text).toContain('event: end')
})
