import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type MockOllama, startMockOllama } from '../../test/fakes/ollama.ts'
import { spawnGantry } from '../../test/gantry-process.ts'
import {
  ADMIN_KEY,
  freshDatabase,
  startTestServer,
  type TestServer,
  tempDir,
  waitFor,
} from '../../test/helpers.ts'
import { codeReply, planReply, tasksOnlyPluginsDir } from './testing.ts'
import { sweepWorkFolders, WorkFolders } from './workdirs.ts'

/** The instance folders under DATA_DIR/sandbox, and the run folders inside them. */
function workFolders(dataDir: string) {
  const root = join(dataDir, 'sandbox')
  const instances = existsSync(root) ? readdirSync(root).filter((n) => n.startsWith('gantry-sandbox-')) : []
  return {
    instances,
    runs: instances.flatMap((i) => readdirSync(join(root, i)).filter((n) => n.startsWith('run-'))),
  }
}

describe('sandbox work folders', () => {
  test('the sweep takes dead servers’ folders, never a live one’s nor this process’s', async () => {
    const root = tempDir('gantry-sweep-')
    // A live process of someone else's (its pid in the folder name) and a pid that is gone.
    const live = Bun.spawn(['sleep', '30'])
    const gone = Bun.spawn(['true'])
    await gone.exited
    try {
      const own = WorkFolders.under(root)
      const mk = (name: string) => {
        mkdirSync(join(root, name, 'run-x'), { recursive: true })
        return join(root, name)
      }
      const liveDir = mk(`gantry-sandbox-${live.pid}-abc`)
      const deadDir = mk(`gantry-sandbox-${gone.pid}-def`)
      // Named after this very pid but made by no instance here: a previous life of the pid (pid 1 in a container).
      const previousLife = mk(`gantry-sandbox-${process.pid}-old`)
      const unrelated = mk('something-else')
      // (The sweep also looks in the system temp dir: other tests' leftovers may go too.)
      const removed = sweepWorkFolders(root).filter((path) => path.startsWith(root))
      expect(removed.sort()).toEqual([deadDir, previousLife].sort())
      for (const dir of [liveDir, own.dir, unrelated]) expect(existsSync(dir)).toBe(true)
      own.remove()
      expect(existsSync(own.dir)).toBe(false)
    } finally {
      live.kill('SIGKILL')
    }
  })

  describe('a server killed with SIGKILL mid-run', () => {
    let mock: MockOllama
    let next: TestServer | undefined
    beforeAll(async () => {
      mock = await startMockOllama()
    })
    afterAll(async () => {
      await next?.stop()
      await mock.stop()
    })

    test('leaves its run folder under DATA_DIR, and the next start on that DATA_DIR removes it', async () => {
      const goal = 'Build a module whose test waits for a long time'
      mock.script(({ body }) => {
        const system = String(body?.messages?.[0]?.content ?? '')
        if (system.startsWith('You plan')) return { content: planReply(['waiter']) }
        return {
          content: codeReply(
            'export const answer = 42\n',
            "import { expect, test } from 'bun:test'\nimport { answer } from './waiter.ts'\ntest('waits', async () => {\n  await new Promise((r) => setTimeout(r, 120_000))\n  expect(answer).toBe(42)\n}, 300_000)\n",
          ),
        }
      })
      const dataDir = tempDir('gantry-killed-')
      chmodSync(dataDir, 0o755) // reachable by the sandbox uid: the folder stays under DATA_DIR
      const database = await freshDatabase()
      const tmpRunsBefore = readdirSync(tmpdir()).filter((n) => n.startsWith('gantry-run-')).length
      const g = spawnGantry({
        DATA_DIR: dataDir,
        ADMIN_API_KEY: ADMIN_KEY,
        OLLAMA_HOST: mock.url,
        PLUGINS_DIR: tasksOnlyPluginsDir(),
        SANDBOX_TIMEOUT_MS: '300000',
        ...(database.url ? { DATABASE_URL: database.url } : {}),
      })
      try {
        const url = await g.url(30_000)
        const res = await fetch(`${url}/tasks`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: goal, max_iterations: 1 }),
        })
        expect(res.status).toBe(201)
        const id = ((await res.json()) as { task_id: string }).task_id
        await waitFor(() => workFolders(dataDir).runs.length > 0, 30_000, 'a test run to start').catch(
          async (err) => {
            const task = await fetch(`${url}/tasks/${id}`, {
              headers: { authorization: `Bearer ${ADMIN_KEY}` },
            }).then((r) => r.json())
            throw new Error(`${err.message}: ${JSON.stringify(task)}\n${g.stderr().slice(-2000)}`)
          },
        )
        const killed = workFolders(dataDir)
        expect(killed.instances).toEqual([expect.stringMatching(new RegExp(`^gantry-sandbox-${g.pid}-`))])
        g.proc.kill('SIGKILL')
        await g.proc.exited
        // The kill left the module's code behind, under DATA_DIR (none in the system temp dir).
        expect(workFolders(dataDir)).toEqual(killed)
        expect(readdirSync(tmpdir()).filter((n) => n.startsWith('gantry-run-')).length).toBe(tmpRunsBefore)

        next = await startTestServer({ DATA_DIR: dataDir, PLUGINS_DIR: tasksOnlyPluginsDir() })
        const after = workFolders(dataDir)
        expect(after.instances).not.toContain(killed.instances[0])
        expect(after.instances).toHaveLength(1) // the new server's own
        expect(
          next.log.records().some((r) => r.msg === 'removed sandbox work folders left by a server that died'),
        ).toBe(true)
        await next.stop()
        next = undefined
        // A clean stop takes its own folder with it.
        expect(workFolders(dataDir).instances).toEqual([])
      } finally {
        g.proc.kill('SIGKILL')
        await database.drop()
        rmSync(dataDir, { recursive: true, force: true })
      }
    }, 120_000)
  })
})
