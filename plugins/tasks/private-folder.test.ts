/**
 * Gantry run from a private folder: as root, `mkdir -m700 private && git clone … private/app && npm start`.
 * The sandbox runs each test as an unprivileged uid, which cannot pass through `private/` to reach the bun it
 * should bind, nor DATA_DIR. Here the bun binary (hard-linked) and DATA_DIR live under a mode-700 folder.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { chmodSync, linkSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { ADMIN_KEY, freshDatabase, ROOT, tempDir, waitFor } from '../../test/helpers.ts'
import { isRoot } from './runtime.ts'
import { createExecutor, SandboxUnavailable, typeCheckArgv } from './sandbox.ts'
import { codeReply, MODULES, planReply, tasksOnlyPluginsDir } from './testing.ts'

/** `private/app/bun` (a hard link to the running bun) inside a fresh mode-700 folder. */
function privateCheckout() {
  const priv = tempDir('gantry-private-')
  chmodSync(priv, 0o700)
  const app = join(priv, 'app')
  mkdirSync(app)
  const bun = join(app, 'bun')
  linkSync(process.execPath, bun)
  return { priv, app, bun }
}

const addTest = {
  'mathutil.ts': MODULES.mathutil.code,
  'mathutil.test.ts': MODULES.mathutil.tests,
}

// Only root drops to a sandbox uid of its own; as another user the sandbox runs as that user, who can read.
describe.skipIf(!isRoot())('the sandbox inside a mode-700 folder', () => {
  test('runs tests and type checks: the runtime moves to a folder the sandbox uid can reach', async () => {
    const { priv, app, bun } = privateCheckout()
    const made = await createExecutor('sandbox', {
      bwrap: 'bwrap',
      bun,
      workRoot: join(app, 'data', 'sandbox'),
    })
    try {
      expect(made.problem).toBeUndefined()
      const run = await made.executor!.run(addTest, ['bun', 'test', './mathutil.test.ts'])
      expect(run.output).toMatch(/\b2 pass\b/)
      expect(run.exitCode).toBe(0)
      const types = await made.executor!.run(
        { 'a.ts': 'export const n: number = 1\n' },
        typeCheckArgv(['a.ts']),
      )
      expect(types.exitCode).toBe(0)
    } finally {
      made.close()
      rmSync(priv, { recursive: true, force: true })
    }
  }, 60_000)

  test('a sandbox that cannot run says so at start, and a run it cannot start is no test verdict', async () => {
    const dir = tempDir('gantry-notbun-')
    chmodSync(dir, 0o755)
    const notBun = join(dir, 'bun')
    writeFileSync(notBun, 'not a program\n', { mode: 0o755 })
    const broken = await createExecutor('sandbox', { bwrap: 'bwrap', bun: notBun })
    broken.close()
    expect(broken.executor).toBeUndefined()
    expect(broken.problem).toContain('a probe run in the sandbox failed')

    // Works at start, then its bun goes away: bubblewrap refuses the bind, and the run says so by throwing.
    const link = join(dir, 'bun-link')
    linkSync(process.execPath, link)
    const made = await createExecutor('sandbox', { bwrap: 'bwrap', bun: link })
    try {
      expect(made.problem).toBeUndefined()
      rmSync(link)
      const failed = await made.executor!.run(addTest, ['bun', 'test', './mathutil.test.ts']).catch((e) => e)
      expect(failed).toBeInstanceOf(SandboxUnavailable)
      expect(failed.message).toContain("bwrap: Can't find source path")
    } finally {
      made.close()
    }
  }, 60_000)

  describe('end to end: the server started from the private folder', () => {
    let mock: MockOllama
    let database: Awaited<ReturnType<typeof freshDatabase>>
    let proc: ReturnType<typeof Bun.spawn> | undefined
    beforeAll(async () => {
      mock = await startMockOllama()
      database = await freshDatabase()
    })
    afterAll(async () => {
      proc?.kill('SIGKILL')
      await proc?.exited
      await database.drop()
      await mock.stop()
    })

    test('a task runs its tests and completes with quality 1', async () => {
      const { priv, app, bun } = privateCheckout()
      mock.script(({ body }) =>
        String(body?.messages?.[0]?.content ?? '').startsWith('You plan')
          ? { content: planReply(['mathutil']) }
          : { content: codeReply(MODULES.mathutil.code, MODULES.mathutil.tests) },
      )
      let stderr = ''
      proc = Bun.spawn([bun, join(ROOT, 'src/index.ts')], {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: app,
          HOST: '127.0.0.1',
          PORT: '0',
          LOG_LEVEL: 'warn',
          DATA_DIR: join(app, 'data'),
          ADMIN_API_KEY: ADMIN_KEY,
          OLLAMA_HOST: mock.url,
          PLUGINS_DIR: tasksOnlyPluginsDir(),
          ...(database.url ? { DATABASE_URL: database.url } : {}),
        },
        stdout: 'ignore',
        stderr: 'pipe',
      })
      void (async () => {
        const reader = (proc.stderr as ReadableStream<Uint8Array>).getReader()
        const decoder = new TextDecoder()
        for (let r = await reader.read(); !r.done; r = await reader.read())
          stderr += decoder.decode(r.value, { stream: true })
      })()
      try {
        const url = await waitFor(() => /is up: (http:\/\/\S+)/.exec(stderr)?.[1], 30_000, 'the server')
        const api = async (path: string, init: RequestInit = {}) =>
          (await fetch(url + path, {
            ...init,
            headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
          }).then((r) => r.json())) as any
        const created = await api('/tasks', {
          method: 'POST',
          body: JSON.stringify({ prompt: 'Build an adder from a private folder', max_iterations: 1 }),
        })
        await waitFor(
          async () => ['completed', 'failed'].includes((await api(`/tasks/${created.task_id}`)).status),
          60_000,
          'the task to finish',
        )
        const results = await api(`/tasks/${created.task_id}/results`)
        const [module] = results.modules
        expect(module.test_report.output).not.toContain('bwrap')
        expect({
          status: results.status,
          quality: module.quality_score,
          passed: module.test_report.passed,
        }).toEqual({ status: 'completed', quality: 1, passed: 2 })
      } finally {
        const pid = proc.pid
        proc.kill('SIGTERM')
        await proc.exited
        proc = undefined
        rmSync(priv, { recursive: true, force: true })
        // On the way out the server removed the work folder it had to make in the temp dir.
        expect(readdirSync(tmpdir()).filter((n) => n.startsWith(`gantry-sandbox-${pid}-`))).toEqual([])
      }
    }, 90_000)
  })
})
