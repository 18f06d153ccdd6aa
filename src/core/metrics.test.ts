import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { connectWs } from '../../plugins/websocket/testing.ts'
import { ADMIN_KEY, createUserKey, startTestServer, type TestServer } from '../../test/helpers.ts'
import { ConfigError, loadConfig } from '../config.ts'
import { observeHttpRequest, recordSandboxRun, sandboxStop } from './metrics.ts'

const TOKEN = 'scrape-token-for-the-metrics-test'

/** The value of one sample line (`name{labels} value`), or undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const labelText = /\{(.*)\}/.exec(line)?.[1] ?? ''
    if (wanted.every((w) => labelText.split(',').includes(w)))
      return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return undefined
}

describe('GET /metrics', () => {
  let server: TestServer
  let userKey = ''
  const scrape = async (key: string | null = ADMIN_KEY) => {
    const res = await server.api('/metrics', { key })
    if (res.status !== 200) throw new Error(`scrape: ${res.status} ${JSON.stringify(res.body)}`)
    return res.body as string
  }

  beforeAll(async () => {
    server = await startTestServer({ METRICS_TOKEN: TOKEN, CODE_EXECUTION: 'off' })
    userKey = (await createUserKey(server, 'metrics-user')).key
  }, 30_000)
  afterAll(async () => {
    await server?.stop()
  })

  test('never public: 401 without credentials or with a wrong token, 403 for a non-admin, in JSON', async () => {
    for (const key of [null, 'not-the-scrape-token-at-all']) {
      const res = await server.api('/metrics', { key })
      expect(res.status).toBe(401)
      expect(res.body).toMatchObject({ error: 'unauthorized' })
      expect(typeof res.body.message).toBe('string')
    }
    const user = await server.api('/metrics', { key: userKey })
    expect(user.status).toBe(403)
    expect(user.body.error).toBe('forbidden')
  })

  test('the scrape token and an admin key both get the Prometheus text format', async () => {
    for (const key of [TOKEN, ADMIN_KEY]) {
      const res = await server.api('/metrics', { key })
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4')
      expect(res.body).toContain('# TYPE gantry_http_request_duration_seconds histogram')
    }
  })

  test('process CPU, memory and event-loop lag (prom-client defaults)', async () => {
    const text = await scrape(TOKEN)
    expect(sample(text, 'process_cpu_seconds_total')).toBeGreaterThan(0)
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0)
    expect(text).toContain('nodejs_eventloop_lag_seconds')
  })

  test('live state is read when scraped: open WebSockets, subscribers, the job queue', async () => {
    const before = await scrape()
    const task = await server.api('/tasks', { method: 'POST', json: { prompt: 'a task for the metrics' } })
    expect(task.status).toBe(201)
    const ws = await connectWs(`${server.url.replace('http', 'ws')}/ws/${task.body.task_id}`, {
      authorization: `Bearer ${ADMIN_KEY}`,
    })
    await ws.next((f) => f.seq === 1)
    const during = await scrape()
    expect(sample(during, 'gantry_websockets_open')).toBe((sample(before, 'gantry_websockets_open') ?? 0) + 1)
    expect(sample(during, 'gantry_event_subscribers')).toBeGreaterThanOrEqual(1)
    expect(during).toContain('# TYPE gantry_jobs gauge')
    ws.ws.close()
    await ws.closed
  })

  test('the scrape token must be 16+ characters without spaces; a bad one stops the start naming it', () => {
    expect(() => loadConfig({ METRICS_TOKEN: 'short' })).toThrow(ConfigError)
    expect(() => loadConfig({ METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN/)
    expect(loadConfig({ METRICS_TOKEN: TOKEN }).metricsToken).toBe(TOKEN)
    expect(loadConfig({}).metricsToken).toBeUndefined()
  })
})

describe('recorders', () => {
  test('HTTP requests are labelled by route template and status, with cumulative buckets', async () => {
    const server = await startTestServer({ CODE_EXECUTION: 'off' })
    try {
      observeHttpRequest('GET', '/metrics-test/:id', 200, 3)
      observeHttpRequest('GET', '/metrics-test/:id', 200, 30)
      observeHttpRequest('GET', '/metrics-test/:id', 404, 1)
      observeHttpRequest('GET', undefined, 404, 1)
      const text = (await server.api('/metrics')).body as string
      const name = 'gantry_http_request_duration_seconds'
      const labels = { method: 'GET', route: '/metrics-test/:id', status: '200' }
      expect(sample(text, `${name}_count`, labels)).toBe(2)
      expect(sample(text, `${name}_sum`, labels)).toBeCloseTo(0.033, 6)
      expect(sample(text, `${name}_bucket`, { ...labels, le: '0.005' })).toBe(1)
      expect(sample(text, `${name}_bucket`, { ...labels, le: '0.05' })).toBe(2)
      expect(sample(text, `${name}_bucket`, { ...labels, le: '+Inf' })).toBe(2)
      expect(sample(text, `${name}_count`, { ...labels, status: '404' })).toBe(1)
      expect(sample(text, `${name}_count`, { route: '(unmatched)', status: '404' })).toBeGreaterThanOrEqual(1)
    } finally {
      await server.stop()
    }
  }, 30_000)

  test('a sandbox run is counted by the limit that stopped it', () => {
    const run = { exitCode: 0, timedOut: false, cancelled: false, truncated: false }
    expect(sandboxStop(run)).toBe('none')
    expect(sandboxStop({ ...run, exitCode: null, timedOut: true })).toBe('wall_clock')
    expect(sandboxStop({ ...run, truncated: true })).toBe('output')
    expect(sandboxStop({ ...run, exitCode: 152 })).toBe('signal')
    expect(sandboxStop({ ...run, exitCode: 1 })).toBe('none')
    expect(sandboxStop({ ...run, cancelled: true })).toBe('cancelled')
    recordSandboxRun({ ...run, timedOut: true }, performance.now() - 30_000)
  })
})
