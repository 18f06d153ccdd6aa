/**
 * Guidance that no model call will see: posted during the last test run, before a cancel, or just as the task
 * ends. Each gets an INTERVENTION_NOT_APPLIED `{guidance, received_seq, reason}` instead of silence.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { startTestServer, type TestServer, waitFor } from '../../test/helpers.ts'
import {
  codeReply,
  eventsOf,
  finished,
  MODULES,
  planReply,
  routeByGoal,
  tasksOnlyPluginsDir,
  waitForEvent,
} from './testing.ts'

let mock: MockOllama
let server: TestServer
let model: ReturnType<typeof routeByGoal>

beforeAll(async () => {
  mock = await startMockOllama()
  model = routeByGoal(mock)
  server = await startTestServer({
    PLUGINS_DIR: tasksOnlyPluginsDir(),
    OLLAMA_HOST: mock.url,
    OLLAMA_MODEL: 'llama3.2',
    SANDBOX_TIMEOUT_MS: '30000',
  })
}, 30_000)
afterAll(async () => {
  await server.stop()
  await mock.stop()
}, 30_000)

const start = async (prompt: string) => {
  const res = await server.api('/tasks', { method: 'POST', json: { prompt, max_iterations: 1 } })
  expect(res.status).toBe(201)
  return res.body.task_id as string
}
const steer = (id: string, guidance: string) =>
  server.api(`/tasks/${id}/interventions`, { method: 'POST', json: { guidance } })

describe('late guidance', () => {
  test('guidance sent during the last test run is answered as not applied, before TASK_COMPLETE', async () => {
    const goal = 'Build an adder whose tests take a moment'
    // The tests take a second and a half: time to steer after the last model call.
    const slowTests = `${MODULES.mathutil.tests}\ntest('slowly', async () => { await Bun.sleep(1500) })\n`
    model.on(goal, ({ step }) =>
      step === 'plan'
        ? { content: planReply(['mathutil']) }
        : { content: codeReply(MODULES.mathutil.code, slowTests) },
    )
    const id = await start(goal)
    await waitFor(
      async () =>
        (await eventsOf(server, id)).some(
          (e) => e.type === 'LOG' && String((e.data as any).message).startsWith('Testing mathutil.ts'),
        ),
      30_000,
      'the last test run',
    )
    const res = await steer(id, 'Also handle bigints')
    expect(res.status).toBe(202)
    const events = await finished(server, id, 60_000)
    const late = events.filter((e) => e.type === 'INTERVENTION_NOT_APPLIED')
    expect(late.map((e) => e.data)).toEqual([
      {
        guidance: 'Also handle bigints',
        received_seq: res.body.seq,
        reason: 'The task completed before another model call could use it.',
      },
    ])
    expect(events.some((e) => e.type === 'INTERVENTION_APPLIED')).toBe(false)
    expect(events.at(-1)!.type).toBe('TASK_COMPLETE')
    expect(late[0]!.seq).toBeLessThan(events.at(-1)!.seq)
  }, 90_000)

  test('guidance waiting for a model call that a cancel stops is answered with the cancel', async () => {
    const goal = 'Build an adder that is cancelled while planning'
    model.on(goal, () => ({ content: planReply(['mathutil']), hang: true }))
    const id = await start(goal)
    await waitFor(() => mock.requests.some((r) => JSON.stringify(r.body ?? '').includes(goal)))
    const res = await steer(id, 'Prefer small modules')
    expect(res.status).toBe(202)
    expect((await server.api(`/tasks/${id}/cancel`, { method: 'POST' })).status).toBe(202)
    await waitForEvent(server, id, 'TASK_CANCELLED')
    const events = await eventsOf(server, id)
    const late = events.find((e) => e.type === 'INTERVENTION_NOT_APPLIED')
    expect(late?.data).toEqual({
      guidance: 'Prefer small modules',
      received_seq: res.body.seq,
      reason: 'The task was cancelled before another model call could use it.',
    })
    expect(events.at(-1)!.type).toBe('TASK_CANCELLED')
  }, 30_000)

  test('guidance that lands after the task’s terminal event gets a 409 and INTERVENTION_NOT_APPLIED', async () => {
    const goal = 'Build an adder that ends as guidance arrives'
    model.on(goal, () => ({ content: planReply(['mathutil']), hang: true }))
    const id = await start(goal)
    await waitFor(() => mock.requests.some((r) => JSON.stringify(r.body ?? '').includes(goal)))
    // The moment between a task's terminal event and its row saying so: the row still says running.
    await server.running.gantry.events.append(id, 'TASK_FAILED', { reason: 'ended meanwhile', module: null })
    const res = await steer(id, 'Too late now')
    expect(res.status).toBe(409)
    expect(res.body.error).toBe('conflict')
    expect(res.body.message).toContain('finished before the guidance arrived')
    const events = await eventsOf(server, id)
    const received = events.find((e) => e.type === 'INTERVENTION_RECEIVED')!
    const late = events.find((e) => e.type === 'INTERVENTION_NOT_APPLIED')
    expect(late?.data).toEqual({
      guidance: 'Too late now',
      received_seq: received.seq,
      reason: 'The task had already finished; guidance is no longer applied.',
    })
    expect(res.body.details).toMatchObject({ received_seq: received.seq })
    await server.api(`/tasks/${id}/cancel`, { method: 'POST' })
    await waitForEvent(server, id, 'TASK_CANCELLED')
  }, 30_000)
})
