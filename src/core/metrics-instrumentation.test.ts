/**
 * The figures of GET /metrics move with real work: HTTP requests by route template, a task run through the
 * simulated Ollama and the sandbox, its events appended and delivered to a WebSocket, a chat answer's speed,
 * an Ollama failure. Counters are per process, so each check compares a scrape before with one after.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { routeByGoal, straight } from '../../plugins/tasks/testing.ts'
import { connectWs } from '../../plugins/websocket/testing.ts'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'

let server: TestServer
let ollama: MockOllama

beforeAll(async () => {
  ollama = await startMockOllama()
  server = await startTestServer({
    OLLAMA_HOST: ollama.url,
    OLLAMA_MODEL: 'llama3.2',
    CODE_EXECUTION: 'unsandboxed',
  })
}, 30_000)
afterAll(async () => {
  await server?.stop()
  await ollama?.stop()
})

/** Sum of the samples of `name` whose labels include `labels`. */
function total(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const labelText = /\{(.*)\}/.exec(line)?.[1] ?? ''
    if (wanted.every((w) => labelText.split(',').includes(w)))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}
const scrape = async () => String((await server.api('/metrics')).body)

test('HTTP requests are counted by route template, not by path', async () => {
  const before = await scrape()
  const labels = { method: 'GET', route: '/tasks/:id', status: '404' }
  for (const id of ['task-a', 'task-b', 'task-c']) expect((await server.api(`/tasks/${id}`)).status).toBe(404)
  const after = await scrape()
  const name = 'gantry_http_request_duration_seconds_count'
  expect(total(after, name, labels) - total(before, name, labels)).toBe(3)
  expect(after).not.toContain('route="/tasks/task-a"')
})

test('a task: Ollama calls, sandbox runs, events appended and delivered, its outcome and duration', async () => {
  const before = await scrape()
  const goal = 'Build the arithmetic the metrics watch'
  routeByGoal(ollama).on(goal, straight(['mathutil']))
  const created = await server.api('/tasks', { method: 'POST', json: { prompt: goal } })
  expect(created.status).toBe(201)
  const ws = await connectWs(`${server.url.replace('http', 'ws')}/ws/${created.body.task_id}`, {
    authorization: `Bearer ${ADMIN_KEY}`,
  })
  await ws.next((f) => f.type === 'TASK_COMPLETE' || f.type === 'TASK_FAILED', 30_000)
  ws.ws.close()
  const after = await waitFor(
    async () => {
      const text = await scrape()
      return total(text, 'gantry_job_outcomes_total', { kind: 'task' }) >
        total(before, 'gantry_job_outcomes_total', { kind: 'task' })
        ? text
        : undefined
    },
    5000,
    'the task outcome',
  )
  const grew = (name: string, labels: Record<string, string> = {}) =>
    total(after, name, labels) - total(before, name, labels)
  expect(grew('gantry_job_outcomes_total', { kind: 'task', outcome: 'succeeded' })).toBe(1)
  expect(grew('gantry_job_duration_seconds_count', { kind: 'task' })).toBe(1)
  expect(grew('gantry_ollama_request_duration_seconds_count', { path: '/api/chat' })).toBeGreaterThanOrEqual(
    2,
  )
  expect(grew('gantry_sandbox_runs_total', { stopped_by: 'none' })).toBeGreaterThanOrEqual(1)
  expect(grew('gantry_sandbox_run_duration_seconds_count')).toBeGreaterThanOrEqual(1)
  const events = ws.frames.filter((f) => typeof f.seq === 'number').length
  expect(grew('gantry_events_appended_total')).toBeGreaterThanOrEqual(events)
  expect(grew('gantry_events_delivered_total')).toBeGreaterThanOrEqual(1)
  expect(grew('gantry_event_delivery_lag_seconds_count')).toBeGreaterThanOrEqual(1)
}, 60_000)

test('a chat answer: tokens per second and time to first token; an Ollama failure is counted', async () => {
  const before = await scrape()
  ollama.script(() => ({ content: 'one two three four five six', tokensPerSecond: 200 }))
  const session = await server.api('/api/sessions', { method: 'POST', json: { name: 'metrics' } })
  const chat = await server.api(`/api/sessions/${session.body.session_id}/chat`, {
    method: 'POST',
    json: { message: 'count' },
  })
  expect(chat.status).toBe(202)
  await waitFor(
    async () =>
      total(await scrape(), 'gantry_chat_tokens_per_second_count') >
      total(before, 'gantry_chat_tokens_per_second_count'),
    15_000,
    'the answer’s figures',
  )
  ollama.script(() => ({ error: { status: 500, message: 'model exploded' } }))
  const failed = await server.api('/v1/chat/completions', {
    method: 'POST',
    json: { model: 'llama3.2', messages: [{ role: 'user', content: 'fail please' }] },
  })
  expect(failed.status).toBeGreaterThanOrEqual(500)
  const after = await scrape()
  expect(total(after, 'gantry_chat_first_token_seconds_count')).toBeGreaterThan(
    total(before, 'gantry_chat_first_token_seconds_count'),
  )
  expect(
    total(after, 'gantry_ollama_errors_total', { path: '/api/chat', error: '500' }) -
      total(before, 'gantry_ollama_errors_total', { path: '/api/chat', error: '500' }),
  ).toBeGreaterThanOrEqual(1)
}, 30_000)
