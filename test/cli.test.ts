import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { good, planReply, straight } from '../plugins/tasks/testing.ts'
import { buildProgram } from '../src/cli/gantry/main.ts'
import {
  type CliWorld,
  GANTRY_BIN,
  runGantry,
  spawnGantryCli,
  startCliWorld,
} from '../src/cli/gantry/testing.ts'
import { ADMIN_KEY, createUserKey, freeLoopbackPort, tempDir } from './helpers.ts'

// The real `gantry` (node bin/gantry.mjs → bun) against a real server whose model is the simulated Ollama.
// Output is piped here, so it is the line view; test/cli-tty.test.ts covers the terminal.

let world: CliWorld
beforeAll(async () => {
  world = await startCliWorld({ OLLAMA_MODEL: 'qwen3', TASK_CONCURRENCY: '4' })
}, 30_000)
afterAll(() => world.stop(), 30_000)

const parseLines = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))

describe('help and usage', () => {
  test('every command has a description and --help', () => {
    const walk = (cmd: ReturnType<typeof buildProgram>, path: string[]): string[][] => [
      path,
      ...cmd.commands.filter((c) => c.name() !== 'help').flatMap((c) => walk(c, [...path, c.name()])),
    ]
    const all = walk(buildProgram(), [])
    expect(all.length).toBeGreaterThan(20)
    for (const path of all.slice(1)) {
      let cmd = buildProgram()
      for (const name of path) cmd = cmd.commands.find((c) => c.name() === name)!
      expect(cmd.description().length).toBeGreaterThan(10)
      expect(cmd.helpInformation()).toContain(`Usage: gantry ${path.join(' ')}`)
    }
  })

  test('the real process prints help with exit 0, and usage errors exit 2', async () => {
    const env = world.env()
    const help = await runGantry(['task', 'logs', '--help'], env)
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('Usage: gantry task logs [options] <id>')
    expect(help.stdout).toContain('--follow')

    const unknown = await runGantry(['frobnicate'], env)
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain("unknown command 'frobnicate'")

    const noPrompt = await runGantry(['task'], env)
    expect(noPrompt.code).toBe(2)
    expect(noPrompt.stderr).toContain('say what to build')

    const badIterations = await runGantry(['task', 'x', '--max-iterations', '0'], env)
    expect(badIterations.code).toBe(2)
    expect(badIterations.stderr).toContain('--max-iterations is a whole number from 1 to 20')

    // What only the server can check is still the caller's mistake: exit 2, with the server's reason.
    const tooLong = await runGantry(['task', 'x'.repeat(20_001)], env)
    expect(tooLong.code).toBe(2)
    expect(tooLong.stderr).toMatch(/^gantry: the server refused the request: .*prompt/)
  })
})

describe('connection and credentials', () => {
  test('login checks the key, stores it 0600 in a 0700 folder, never prints it; whoami and logout use it', async () => {
    const home = tempDir('gantry-cli-login-')
    const env = { PATH: process.env.PATH!, HOME: home, XDG_CONFIG_HOME: join(home, 'cfg') }
    const login = await runGantry(['login', '--url', world.server.url], env, `${ADMIN_KEY}\n`)
    expect(login.code).toBe(0)
    expect(login.stdout).toContain(`logged in to ${world.server.url} as admin (admin)`)
    const file = join(home, 'cfg', 'gantry', 'config.json')
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(statSync(dirname(file)).mode & 0o777).toBe(0o700)
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ url: world.server.url, key: ADMIN_KEY })

    const who = await runGantry(['whoami'], env)
    expect(who.code).toBe(0)
    expect(who.stdout).toContain(`admin (admin) at ${world.server.url}`)
    for (const r of [login, who]) expect(r.stdout + r.stderr).not.toContain(ADMIN_KEY)

    // Flags beat the environment, which beats the file.
    const alice = await createUserKey(world.server, 'cli-alice')
    const viaEnv = await runGantry(['whoami'], { ...env, GANTRY_API_KEY: alice.key })
    expect(viaEnv.stdout).toContain('cli-alice (user)')
    const viaFlag = await runGantry(['whoami', '--key', ADMIN_KEY], { ...env, GANTRY_API_KEY: alice.key })
    expect(viaFlag.stdout).toContain('admin (admin)')

    const logout = await runGantry(['logout'], env)
    expect(logout.code).toBe(0)
    expect(existsSync(file)).toBe(false)
    const after = await runGantry(['whoami', '--url', world.server.url], env)
    expect(after.code).toBe(2)
    expect(after.stderr).toContain('no API key: run gantry login')
  })

  test('a wrong key is refused with exit 2 and nothing is stored', async () => {
    const home = tempDir('gantry-cli-login-')
    const env = { PATH: process.env.PATH!, HOME: home, XDG_CONFIG_HOME: join(home, 'cfg') }
    const login = await runGantry(
      ['login', '--url', world.server.url, '--key', 'gk_wrong_wrong-wrong-wrong'],
      env,
    )
    expect(login.code).toBe(2)
    expect(login.stderr).toContain('was refused by')
    expect(login.stderr).not.toContain('gk_wrong_wrong-wrong-wrong')
    expect(existsSync(join(home, 'cfg', 'gantry', 'config.json'))).toBe(false)

    const who = await runGantry(['whoami'], world.env({ GANTRY_API_KEY: 'gk_wrong_wrong-wrong-wrong' }))
    expect(who.code).toBe(2)
    expect(who.stderr).toBe(
      `gantry: the API key from GANTRY_API_KEY was refused by ${world.server.url} (wrong or revoked key)\n`,
    )
  })

  test('an unreachable server: one line naming the URL and GANTRY_URL, exit 2', async () => {
    const url = `http://127.0.0.1:${freeLoopbackPort()}`
    for (const args of [['status'], ['tasks'], ['task', 'Build it', '--follow'], ['chat', '-m', 'hi']]) {
      const r = await runGantry(args, world.env({ GANTRY_URL: url }))
      expect(r.code).toBe(2)
      expect(r.stdout).toBe('')
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr).toContain(`cannot reach the Gantry server at ${url}`)
      expect(r.stderr).toContain('GANTRY_URL')
    }
  })

  test('status: version, database, Ollama and its models, plugins', async () => {
    const r = await runGantry(['status'], world.env())
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^Gantry \d+\.\d+\.\d+ at http:\/\/127\.0\.0\.1:\d+: ready$/m)
    expect(r.stdout).toMatch(/database\s+ok/)
    expect(r.stdout).toMatch(/ollama\s+ok\s+models: llama3\.2:latest, qwen3:latest/)
    expect(r.stdout).toMatch(/plugins\s+logs-stream, sessions, tasks, vnc, websocket/)
    const json = await runGantry(['status', '--json'], world.env())
    const [s] = parseLines(json.stdout)
    expect(s).toMatchObject({ status: 'ready', database: 'ok', ollama: 'ok', user: { role: 'admin' } })
    expect(s.models).toContain('qwen3:latest')
  })
})

describe('tasks', () => {
  test('--follow piped: one line per event, exit 0, and --out writes the results as files', async () => {
    const goal = 'CLI piped statistics library'
    world.model.on(goal, straight(['mathutil', 'stats']))
    const out = join(tempDir('gantry-cli-out-'), 'stats')
    const r = await runGantry(
      ['task', goal, '--answer', 'plain numbers', '--follow', '--out', out],
      world.env(),
    )
    expect(r.code).toBe(0)
    const lines = r.stdout.trim().split('\n')
    const id = /^(task-\S+) queued$/.exec(lines[0]!)![1]!
    const events = lines.slice(1)
    expect(events.map((l) => l.split(' ')[0])).toEqual(events.map((_, i) => String(i + 1)))
    expect(events.filter((l) => !/^\d+ LOG /.test(l)).map((l) => l.split(' ')[1])).toEqual([
      'TASK_STARTED',
      'PLANNING_COMPLETE',
      'MODULE_STARTED',
      'MODULE_ITERATION',
      'TEST_PASSED',
      'MODULE_COMPLETE',
      'MODULE_STARTED',
      'MODULE_ITERATION',
      'TEST_PASSED',
      'MODULE_COMPLETE',
      'TASK_COMPLETE',
    ])
    expect(r.stdout).toContain(
      'MODULE_ITERATION mathutil.ts iteration 1: tests 100% (2 passed, 0 failed), quality 1.00',
    )
    expect(r.stdout).not.toContain('\x1b[')
    expect(r.stderr).toContain(`wrote 4 files to ${out}`)

    const results = (await world.server.api(`/tasks/${id}/results`)).body
    expect(readdirSync(out).sort()).toEqual(['mathutil.test.ts', 'mathutil.ts', 'stats.test.ts', 'stats.ts'])
    for (const m of results.modules) {
      const stem = m.name.replace(/\.ts$/, '')
      expect(readFileSync(join(out, `${stem}.ts`), 'utf8')).toBe(m.code)
      expect(readFileSync(join(out, `${stem}.test.ts`), 'utf8')).toBe(m.tests)
    }

    const shown = await runGantry(['task', 'show', id], world.env())
    expect(shown.code).toBe(0)
    expect(shown.stdout).toMatch(/status\s+completed/)
    expect(shown.stdout).toMatch(/progress\s+2\/2 modules \(100%\)/)
    const listed = await runGantry(['tasks', '--status', 'completed'], world.env())
    expect(listed.stdout).toMatch(new RegExp(`^${id}\\s+completed\\s+2/2\\s+\\d+s ago\\s+${goal}$`, 'm'))
    const res = await runGantry(['task', 'results', id], world.env())
    expect(res.stdout).toMatch(/mathutil\.ts\s+complete\s+1\.00\s+2\/2 \(100%\)/)
    const logs = await runGantry(['task', 'logs', id, '--level', 'info'], world.env())
    expect(logs.stdout.split('\n')[0]).toBe('[INFO] Task started')
    expect(logs.stdout).toContain('[INFO] Planning complete: mathutil.ts, stats.ts')
    const logsF = await runGantry(['task', 'logs', '-f', id], world.env())
    expect(logsF.code).toBe(0)
    expect(logsF.stdout).toBe(logs.stdout)

    const again = await runGantry(['task', 'intervene', id, 'use', 'RFC', '5322'], world.env())
    expect(again.code).toBe(2)
    expect(again.stderr).toContain('has finished; guidance is no longer taken')
    const deleted = await runGantry(['task', 'delete', id], world.env())
    expect(deleted.stdout).toBe(`${id} deleted\n`)
    const gone = await runGantry(['task', 'show', id], world.env())
    expect(gone.code).toBe(1)
    expect(gone.stderr).toBe(`gantry: no task ${id}\n`)
  }, 90_000)

  test('--json under CI=true: every line parses, seq 1..N once each, the terminal event last', async () => {
    const goal = 'CLI json statistics library'
    world.model.on(goal, straight(['mathutil']))
    const r = await runGantry(['task', goal, '--follow', '--json'], world.env({ CI: 'true' }))
    expect(r.code).toBe(0)
    const events = parseLines(r.stdout)
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1))
    expect(events.at(-1)).toMatchObject({ type: 'TASK_COMPLETE', data: { modules_generated: 1 } })
    expect(new Set(events.map((e) => e.task_id)).size).toBe(1)

    const created = parseLines((await runGantry(['task', goal, '--json'], world.env())).stdout)
    expect(created).toHaveLength(1)
    expect(created[0].task_id).toMatch(/^task-/)
    expect(created[0].status).toBe('queued')
  }, 90_000)

  test('a reader that goes away (| head) ends the follower quietly', async () => {
    const goal = 'CLI library read by head'
    world.model.on(goal, straight(['mathutil']))
    const shell = Bun.spawn(
      [
        'bash',
        '-c',
        `node ${GANTRY_BIN} task "${goal}" --follow | head -n 2; echo "rc=\${PIPESTATUS[0]}" >&2`,
      ],
      { env: world.env(), stdout: 'pipe', stderr: 'pipe' },
    )
    const [stdout, stderr] = await Promise.all([
      new Response(shell.stdout).text(),
      new Response(shell.stderr).text(),
    ])
    await shell.exited
    expect(stdout).toMatch(/^task-\S+ queued\n1 TASK_STARTED /)
    expect(stderr).toBe('rc=0\n')
  }, 60_000)

  test('a failed task exits 1; an unknown task is "no task …", exit 1', async () => {
    const goal = 'CLI task that cannot be planned'
    world.model.on(goal, () => ({ content: 'no plan, sorry' }))
    const r = await runGantry(['task', goal, '--follow'], world.env())
    expect(r.code).toBe(1)
    expect(r.stdout).toMatch(/TASK_FAILED task failed: The model gave no usable planning reply/)

    for (const sub of ['show', 'results', 'logs', 'cancel', 'delete', 'follow']) {
      const missing = await runGantry(['task', sub, 'task-nope'], world.env())
      expect(missing.code).toBe(1)
      expect(missing.stderr).toBe('gantry: no task task-nope\n')
    }
  }, 60_000)

  test('task cancel stops a running task; a follower sees it and exits 1', async () => {
    const goal = 'CLI task to cancel'
    world.model.on(goal, ({ step }) =>
      step === 'plan' ? { content: planReply(['mathutil']) } : { ...good('mathutil'), delayMs: 20_000 },
    )
    const follower = spawnGantryCli(['task', goal, '--follow'], world.env())
    const line = await follower.waitForStdout(/MODULE_STARTED/)
    expect(line).toContain('mathutil.ts (1/1) started')
    const id = /^(task-\S+) queued$/m.exec(follower.stdout())![1]!
    const steer = await runGantry(['task', 'intervene', id, 'Use', 'integers', 'only'], world.env())
    expect(steer.code).toBe(0)
    expect(steer.stdout).toMatch(new RegExp(`^guidance for ${id} recorded \\(seq \\d+\\)`))
    await follower.waitForStdout(/INTERVENTION_RECEIVED guidance received: "Use integers only"/)
    const cancel = await runGantry(['task', 'cancel', id], world.env())
    expect(cancel.code).toBe(0)
    expect(cancel.stdout).toMatch(new RegExp(`^${id} cancell(ed|ing)`))
    const done = await follower.exit()
    expect(done.code).toBe(1)
    expect(done.stdout).toMatch(/TASK_CANCELLED task cancelled/)
  }, 60_000)
})

describe('chat', () => {
  test('-m streams the answer, reasoning when asked, and exits 0', async () => {
    world.model.on('Why is the sky blue', () => ({
      thinking: 'Short wavelengths scatter more.',
      content: 'Because of Rayleigh scattering.',
      tokensPerSecond: 200,
    }))
    const r = await runGantry(
      ['chat', '-m', 'Why is the sky blue?', '--session', 'cli-sky', '--reasoning'],
      world.env(),
    )
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('Short wavelengths scatter more.\nBecause of Rayleigh scattering.\n')

    const json = await runGantry(
      ['chat', '--session', 'cli-sky', '--json', '-m', 'Why is the sky blue, again?'],
      world.env(),
    )
    expect(json.code).toBe(0)
    const events = parseLines(json.stdout)
    expect(events.map((e) => e.type)).toContain('content')
    expect(events.at(-1)).toMatchObject({
      type: 'response',
      data: { content: 'Because of Rayleigh scattering.' },
    })
    expect(events.map((e) => e.type)).not.toContain('reasoning')
    const text = events
      .filter((e) => e.type === 'content')
      .map((e) => e.data.content)
      .join('')
    expect(text).toBe('Because of Rayleigh scattering.')

    const sessions = await runGantry(['sessions'], world.env())
    expect(sessions.stdout).toMatch(/^cli-sky\s+sess-\S+\s+assistant\s/m)
    const messages = (await world.server.api('/api/sessions/cli-sky/messages')).body.messages
    expect(messages.map((m: { role: string }) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant'])
  }, 30_000)

  test('a message piped on stdin, an agent with tools: the tool call and its result are shown', async () => {
    world.model.on('Which tasks do I have', ({ n }) =>
      n === 1
        ? { tool_calls: [{ name: 'list_my_tasks', arguments: {} }] }
        : { content: 'You have a few tasks.' },
    )
    // A user of its own: the tool's answer (their task list) must not quote another test's task goals, which
    // route the simulated model.
    const dave = await createUserKey(world.server, 'cli-chat-dave')
    const r = await runGantry(
      ['chat', '--agent', 'assistant'],
      world.env({ GANTRY_API_KEY: dave.key }),
      'Which tasks do I have?\n',
    )
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^→ list_my_tasks\(\{\}\)$/m)
    expect(r.stdout).toMatch(/^← list_my_tasks: \[\]$/m)
    expect(r.stdout.trim().split('\n').at(-1)).toBe('You have a few tasks.')
  }, 30_000)

  test('an unknown agent is refused with exit 2; agents lists them', async () => {
    const r = await runGantry(['chat', '--agent', 'nobody', '-m', 'hi'], world.env())
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('nobody')
    const agents = await runGantry(['agents'], world.env())
    expect(agents.stdout).toMatch(/^researcher\s+\(default\)\s+yes\s/m)
  }, 30_000)
})

describe('admin commands', () => {
  test('keys: create, list, revoke; a user is not allowed (exit 2)', async () => {
    const created = await runGantry(
      ['keys', 'create', '--user', 'cli-carol', '--name', 'laptop'],
      world.env(),
    )
    expect(created.code).toBe(0)
    const key = created.stdout.trim()
    expect(key).toMatch(/^gk_/)
    const list = await runGantry(['keys'], world.env())
    expect(list.stdout).toMatch(/cli-carol\s+user\s+laptop/)
    expect(list.stdout).not.toContain(key)
    const carol = await runGantry(['keys', 'list'], world.env({ GANTRY_API_KEY: key }))
    expect(carol.code).toBe(2)
    expect(carol.stderr).toContain('not allowed')
    const id = /^(key-\S+)\s.*cli-carol/m.exec(list.stdout)![1]!
    expect((await runGantry(['keys', 'revoke', id], world.env())).stdout).toBe(`${id} revoked\n`)
    const refused = await runGantry(['whoami'], world.env({ GANTRY_API_KEY: key }))
    expect(refused.code).toBe(2)
  })

  test('logs -f follows the server log live (admins)', async () => {
    const logs = spawnGantryCli(['logs', '-f', '--json'], world.env())
    // The log stream only has lines from now on: make requests until one shows up.
    let found = ''
    for (let i = 0; i < 50 && !found; i++) {
      await world.server.api('/tasks/task-log-probe')
      await Bun.sleep(100)
      found =
        logs
          .stdout()
          .split('\n')
          .find((l) => l.includes('/tasks/task-log-probe')) ?? ''
    }
    logs.proc.kill('SIGTERM')
    await logs.exit()
    expect(JSON.parse(found)).toMatchObject({ status: 404 })
    const alice = await createUserKey(world.server, 'cli-logs-alice')
    const refused = await runGantry(['logs', '-f'], world.env({ GANTRY_API_KEY: alice.key }))
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain('not allowed')
  })

  test('desktop start, status, stop; mcp without a key', async () => {
    const r = await runGantry(['desktop', 'status'], world.env())
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^desktop: stopped/m)
    const started = await runGantry(['desktop', 'start', '--width', '800', '--height', '600'], world.env())
    expect(started.stderr).toBe('')
    expect(started.stdout).toMatch(/^desktop: running 800×600 on display :\d+$/m)
    expect(started.stdout).toMatch(/^viewer: http:\/\/127\.0\.0\.1:\d+\/vnc\/$/m)
    expect(started.stdout).not.toContain('password')
    const stopped = await runGantry(['desktop', 'stop'], world.env())
    expect(stopped.stdout).toMatch(
      /^The desktop was stopped; none of its processes is left\.\ndesktop: stopped$/m,
    )
    const mcp = await runGantry(['mcp'], world.env({ GANTRY_API_KEY: '' }))
    expect(mcp.code).toBe(2)
    expect(mcp.stderr).toContain('gantry mcp needs an API key')
  })
})
