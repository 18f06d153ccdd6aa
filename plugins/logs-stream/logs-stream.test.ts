import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import {
  ADMIN_KEY,
  bearer,
  type StreamWorld,
  startTestServer,
  streamWorld,
  type TestServer,
  waitFor,
} from '../../test/helpers.ts'
import { openSse } from './testing.ts'

let server: TestServer
let adminId: string
let bob: StreamWorld['bob']
let newStream: StreamWorld['newStream']
const auth = bearer
const events = () => server.running.gantry.events
const log = (level: string, message: string) => ({ type: 'LOG', data: { level, message } })

beforeAll(async () => {
  server = await startTestServer()
  server.running.gantry.state.set('logs-stream:keepAliveMs', 200)
  ;({ adminId, bob, newStream } = await streamWorld(server, 'logs'))
}, 30_000)
afterAll(() => server.stop())

describe('GET /tasks/:id/logs', () => {
  test('LOG events only, paginated, with a minimum level', async () => {
    const task = await newStream()
    await events().appendMany(task, [
      log('info', 'Task started'),
      { type: 'PLANNING_COMPLETE', data: { modules: ['a'] } },
      log('debug', 'thinking'),
      log('warn', 'slow model'),
      log('error', 'tests failed'),
      log('info', 'retrying'),
    ])
    const all = await server.api(`/tasks/${task}/logs`)
    expect(all.status).toBe(200)
    expect(all.body.logs.map((l: any) => [l.seq, l.level, l.message])).toEqual([
      [1, 'info', 'Task started'],
      [3, 'debug', 'thinking'],
      [4, 'warn', 'slow model'],
      [5, 'error', 'tests failed'],
      [6, 'info', 'retrying'],
    ])
    expect(all.body.next_after).toBeNull()
    const page1 = await server.api(`/tasks/${task}/logs?limit=2`)
    expect(page1.body.logs.map((l: any) => l.seq)).toEqual([1, 3])
    expect(page1.body.next_after).toBe(3)
    const page2 = await server.api(`/tasks/${task}/logs?limit=2&after=3`)
    expect(page2.body.logs.map((l: any) => l.seq)).toEqual([4, 5])
    const warn = await server.api(`/tasks/${task}/logs?level=warn`)
    expect(warn.body.logs.map((l: any) => l.level)).toEqual(['warn', 'error'])
    expect(warn.body.logs[0].timestamp).toMatch(/^\d{4}-\d\d-\d\dT/)
  })

  test('bad input: unknown level, limit, after, unknown parameter → 422; no auth → 401', async () => {
    const task = await newStream()
    for (const q of ['level=loud', 'limit=0', 'limit=5000', 'limit=abc', 'after=-1', 'page=2'])
      expect((await server.api(`/tasks/${task}/logs?${q}`)).status).toBe(422)
    expect((await server.api(`/tasks/${task}/logs`, { key: null })).status).toBe(401)
  })

  test('unknown task, another user’s task and a session id → 404', async () => {
    expect((await server.api('/tasks/task-none/logs')).status).toBe(404)
    const admins = await newStream()
    expect((await server.api(`/tasks/${admins}/logs`, { key: bob.key })).status).toBe(404)
    const session = await newStream(adminId, 'session')
    expect((await server.api(`/tasks/${session}/logs`)).status).toBe(404)
    const bobs = await newStream(bob.user_id)
    expect((await server.api(`/tasks/${bobs}/logs`, { key: bob.key })).status).toBe(200)
  })
})

describe('GET /tasks/:id/logs/stream', () => {
  test('SSE lines with ids, keep-alives, then event: end once the task finishes', async () => {
    const task = await newStream()
    await events().appendMany(task, [log('info', 'Task started'), { type: 'TASK_STARTED' }])
    const sse = await openSse(`${server.url}/tasks/${task}/logs/stream`, auth())
    expect(sse.status).toBe(200)
    expect(sse.headers.get('content-type')).toStartWith('text/event-stream')
    expect(sse.headers.get('x-accel-buffering')).toBe('no')
    expect(sse.headers.get('cache-control')).toContain('no-cache')
    expect(await sse.next()).toEqual({ id: '1', data: '[INFO] Task started' })
    await events().append(task, 'LOG', { level: 'warn', message: 'two\nlines' })
    expect(await sse.next((m) => m.id === '3')).toEqual({ id: '3', data: '[WARN] two\nlines' })
    await waitFor(() => sse.comments.includes('keep-alive'), 3000, 'keep-alive comment')
    await events().append(task, 'LOG', { level: 'info', message: 'Task complete' })
    await events().finishStream(task)
    await sse.done
    expect(sse.messages.map((m) => m.event ?? m.id)).toEqual(['1', '3', '4', 'end'])
  })

  test('resumes after Last-Event-ID (or ?since=), with a level filter', async () => {
    const task = await newStream()
    await events().appendMany(task, [
      log('info', 'a'),
      log('error', 'b'),
      log('info', 'c'),
      log('error', 'd'),
    ])
    await events().finishStream(task)
    const resumed = await openSse(`${server.url}/tasks/${task}/logs/stream`, {
      ...auth(),
      'last-event-id': '2',
    })
    await resumed.done
    expect(resumed.messages.map((m) => m.data)).toEqual(['[INFO] c', '[ERROR] d', 'finished'])
    const errors = await openSse(`${server.url}/tasks/${task}/logs/stream?since=0&level=error`, auth())
    await errors.done
    expect(errors.messages.map((m) => m.data)).toEqual(['[ERROR] b', '[ERROR] d', 'finished'])
  })

  test('bad input: Last-Event-ID garbage, since garbage, foreign task, no auth', async () => {
    const task = await newStream()
    for (const id of ['abc', '-3', '1e5', '9'.repeat(20)]) {
      const res = await server.api(`/tasks/${task}/logs/stream`, { headers: { 'last-event-id': id } })
      expect(res.status).toBe(422)
      expect(res.body.message).toContain('Last-Event-ID')
    }
    expect((await server.api(`/tasks/${task}/logs/stream?since=x`)).status).toBe(422)
    expect((await server.api(`/tasks/${task}/logs/stream`, { key: bob.key })).status).toBe(404)
    expect((await server.api(`/tasks/${task}/logs/stream`, { key: null })).status).toBe(401)
  })
})

describe('GET /api/streams/:id/events', () => {
  test('the WebSocket envelope as SSE, for tasks and sessions, resumable', async () => {
    const session = await newStream(adminId, 'session')
    await events().appendMany(session, [{ type: 'A', data: { x: 1 } }, { type: 'B' }])
    const sse = await openSse(`${server.url}/api/streams/${session}/events`, {
      ...auth(),
      'last-event-id': '1',
    })
    const first = await sse.next()
    expect(first.id).toBe('2')
    expect(JSON.parse(first.data)).toEqual({
      type: 'B',
      session_id: session,
      seq: 2,
      timestamp: expect.any(String),
      data: null,
    })
    await events().append(session, 'C', [1])
    expect(JSON.parse((await sse.next((m) => m.id === '3')).data)).toMatchObject({
      type: 'C',
      seq: 3,
      data: [1],
    })
    sse.close()
    const task = await newStream()
    await events().append(task, 'TASK_COMPLETE')
    await events().finishStream(task)
    const done = await openSse(`${server.url}/api/streams/${task}/events`, auth())
    await done.done
    expect(done.messages.map((m) => m.event ?? JSON.parse(m.data).task_id)).toEqual([task, 'end'])
  })

  test('unknown or foreign streams → 404; garbage resume → 422', async () => {
    expect((await server.api('/api/streams/sess-none/events')).status).toBe(404)
    expect((await server.api('/api/streams/nonsense/events')).status).toBe(404)
    const admins = await newStream(adminId, 'session')
    expect((await server.api(`/api/streams/${admins}/events`, { key: bob.key })).status).toBe(404)
    expect(
      (await server.api(`/api/streams/${admins}/events`, { headers: { 'last-event-id': 'x' } })).status,
    ).toBe(422)
  })
})

describe('GET /api/logs/stream', () => {
  test('admins only; records at the level asked and above', async () => {
    expect((await server.api('/api/logs/stream', { key: bob.key })).status).toBe(403)
    expect((await server.api('/api/logs/stream', { key: null })).status).toBe(401)
    expect((await server.api('/api/logs/stream?level=loud')).status).toBe(422)
    const info = await openSse(`${server.url}/api/logs/stream`, auth())
    const warn = await openSse(`${server.url}/api/logs/stream?level=warn`, auth())
    await server.api('/health')
    server.running.gantry.log.warn({ probe: 'logs-stream-test' }, 'a warning for the stream')
    const request = await info.next((m) => JSON.parse(m.data).path === '/health')
    expect(JSON.parse(request.data)).toMatchObject({ msg: 'request', status: 200 })
    const warning = await warn.next((m) => JSON.parse(m.data).probe === 'logs-stream-test')
    expect(JSON.parse(warning.data).level).toBe(40)
    expect(warn.messages.every((m) => JSON.parse(m.data).level >= 40)).toBe(true)
    // Keys never reach the stream, even when a line names them.
    server.running.gantry.log.info({ authorization: `Bearer ${ADMIN_KEY}` }, 'with a secret')
    const secret = await info.next((m) => JSON.parse(m.data).msg === 'with a secret')
    expect(secret.data).not.toContain(ADMIN_KEY)
    info.close()
    warn.close()
  })
})

describe('shutdown', () => {
  test('open SSE streams end when the server stops', async () => {
    const other = await startTestServer()
    try {
      const owner = (await other.api('/api/me')).body.user_id
      await other.running.gantry.events.createStream('task-sse-stop', owner, 'task')
      const sse = await openSse(`${other.url}/tasks/task-sse-stop/logs/stream`, auth())
      expect(sse.status).toBe(200)
      await other.running.stop()
      await sse.done
    } finally {
      await other.stop()
    }
  }, 30_000)
})
