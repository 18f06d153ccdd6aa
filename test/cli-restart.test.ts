import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { good, planReply, routeByGoal } from '../plugins/tasks/testing.ts'
import { type CliWorld, clientPluginsDir, spawnGantryCli, startCliWorld } from '../src/cli/gantry/testing.ts'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { type GantryProcess, spawnGantry } from './gantry-process.ts'
import { ADMIN_KEY, freeLoopbackPort, freshDatabase, tempDir } from './helpers.ts'
import { startTcpProxy } from './tcp-proxy.ts'

// A follower must survive what happens to long tasks: the server restarting under it, the network dropping.
// Either way it reconnects with `since` and backoff, and prints every event once, in order.

/** Plans mathutil and stats; stats is slow while `slow()` says so, so the drop lands while it is in flight. */
const slowStats =
  (slowMs: number, slow: () => boolean) =>
  ({ step, module }: { step: string; module?: string }) =>
    step === 'plan'
      ? { content: planReply(['mathutil', 'stats']) }
      : { ...good(module as 'mathutil' | 'stats'), delayMs: module === 'stats' && slow() ? slowMs : 0 }

function expectEveryEventOnce(stdout: string) {
  const events = stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1))
  expect(events.at(-1).type).toBe('TASK_COMPLETE')
  expect(events.filter((e) => e.type === 'MODULE_COMPLETE').map((e) => e.data.module)).toEqual([
    'mathutil.ts',
    'stats.ts',
  ])
  return events
}

describe('following through a server restart', () => {
  let mock: MockOllama
  let database: Awaited<ReturnType<typeof freshDatabase>>
  const servers: GantryProcess[] = []

  beforeAll(async () => {
    mock = await startMockOllama()
    database = await freshDatabase()
  })
  afterAll(async () => {
    for (const s of servers) s.proc.kill('SIGKILL')
    await Promise.all(servers.map((s) => s.proc.exited))
    await database.drop()
    await mock.stop()
  })

  test('the server stops (SIGTERM) mid-task and starts again: the follower resumes, nothing lost or doubled', async () => {
    const model = routeByGoal(mock)
    const goal = 'Restart-proof statistics library'
    let restarted = false
    model.on(
      goal,
      slowStats(30_000, () => !restarted),
    )
    const env = {
      DATA_DIR: tempDir(),
      PORT: String(freeLoopbackPort()),
      ADMIN_API_KEY: ADMIN_KEY,
      OLLAMA_HOST: mock.url,
      OLLAMA_MODEL: 'llama3.2',
      PLUGINS_DIR: clientPluginsDir(),
      SHUTDOWN_TIMEOUT_MS: '5000',
      ...(database.url ? { DATABASE_URL: database.url } : {}),
    }
    const start = async () => {
      const server = spawnGantry(env)
      servers.push(server)
      return server.url()
    }
    const url = await start()
    const home = tempDir('gantry-cli-home-')
    const follower = spawnGantryCli(['task', goal, '--follow', '--json'], {
      PATH: process.env.PATH!,
      HOME: home,
      GANTRY_URL: url,
      GANTRY_API_KEY: ADMIN_KEY,
    })
    await follower.waitForStdout(/"MODULE_STARTED".*"stats\.ts"/, 60_000)

    const first = servers[0]!
    first.proc.kill('SIGTERM')
    expect(await first.exit()).toBe(0)
    // Down long enough for the follower to find nobody there, more than once.
    await Bun.sleep(1500)
    restarted = true
    expect(await start()).toBe(url)

    const done = await follower.exit()
    expect(done.code).toBe(0)
    const events = expectEveryEventOnce(done.stdout)
    expect(events.some((e) => e.type === 'LOG' && /^Task resumed/.test(e.data.message))).toBe(true)
    expect(done.stderr).toMatch(/connection to http:\/\/127\.0\.0\.1:\d+ lost \(.+\); reconnecting in/)
    expect(done.stderr).toMatch(/reconnected; resuming after seq \d+/)
  }, 120_000)
})

describe('following through a network drop', () => {
  let world: CliWorld
  beforeAll(async () => {
    world = await startCliWorld()
  }, 30_000)
  afterAll(() => world.stop(), 30_000)

  test('every connection is cut and refused for a while: the follower reconnects and misses nothing', async () => {
    const goal = 'Drop-proof statistics library'
    let cut = false
    world.model.on(
      goal,
      slowStats(3000, () => !cut),
    )
    const port = Number(new URL(world.server.url).port)
    const proxy = await startTcpProxy({ host: '127.0.0.1', port })
    try {
      const follower = spawnGantryCli(
        ['task', goal, '--follow', '--json'],
        world.env({ GANTRY_URL: `http://127.0.0.1:${proxy.port}` }),
      )
      await follower.waitForStdout(/"MODULE_STARTED".*"stats\.ts"/, 60_000)
      proxy.cut()
      cut = true
      await Bun.sleep(1500)
      proxy.restore()
      const done = await follower.exit()
      expect(done.code).toBe(0)
      expectEveryEventOnce(done.stdout)
      expect(done.stderr).toMatch(/reconnecting in .*\(attempt 1, from seq \d+\)/)
      expect(done.stderr).toMatch(/reconnecting in .*\(attempt 2, from seq \d+\)/)
    } finally {
      proxy.stop()
    }
  }, 120_000)
})
