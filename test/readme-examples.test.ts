/**
 * The README's own examples, run as written against `npm run mock:ollama` with no scenario: the curl flow of
 * "A task from curl to results" (the flagship email validator must complete with quality 1 and green tests)
 * and "Chat with curl". The commands are read from README.md and run by `sh`, with only the host, the key and
 * the task id swapped in, so the document and the simulator cannot drift apart unnoticed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ADMIN_KEY, freeLoopbackPort, ROOT, startTestServer, type TestServer, waitFor } from './helpers.ts'

let mock: { kill(): void; exited: Promise<number> }
let server: TestServer

beforeAll(async () => {
  const port = freeLoopbackPort()
  // What `npm run mock:ollama` runs, at its default pace.
  const proc = Bun.spawn([process.execPath, join(ROOT, 'test/fakes/ollama-cli.ts')], {
    env: { ...process.env, PORT: String(port), MOCK_OLLAMA_TOKENS_PER_SECOND: '' },
    stdout: 'pipe',
    stderr: 'inherit',
  })
  mock = proc
  const reader = proc.stdout.getReader()
  let banner = ''
  while (!banner.includes('listening on')) {
    const chunk = await reader.read()
    if (chunk.done) throw new Error(`the simulated Ollama did not start: ${banner}`)
    banner += new TextDecoder().decode(chunk.value)
  }
  reader.releaseLock()
  void proc.stdout.pipeTo(new WritableStream())
  server = await startTestServer({ OLLAMA_HOST: `http://127.0.0.1:${port}`, SANDBOX_TIMEOUT_MS: '20000' })
}, 30_000)

afterAll(async () => {
  await server?.stop()
  mock?.kill()
  await mock?.exited
}, 30_000)

/** The first code block of `lang` under the README heading `heading`. */
function readmeBlock(heading: string, lang: string): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf(`### ${heading}`))
  const block = new RegExp(`\`\`\`${lang}\n([\\s\\S]*?)\`\`\``).exec(section)?.[1]
  if (!block) throw new Error(`README has no ${lang} block under "${heading}"`)
  return block
}

/** The shell commands of the README code block under `heading`: continuation lines joined, comments dropped. */
function readmeCommands(heading: string): string[] {
  return readmeBlock(heading, 'sh')
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#') && !/^KEY=/.test(line))
}

function sh(command: string) {
  const proc = Bun.spawn(['sh', '-c', command], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', KEY: ADMIN_KEY },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  return {
    proc,
    output: (async () => {
      const [out, err, code] = await Promise.all([
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
        proc.exited,
      ])
      return { out, err, code }
    })(),
  }
}

const json = (text: string) => JSON.parse(text.trim())

describe('README: a task from curl to results, with the default simulator as the model', () => {
  test('the email validator completes with quality 1 and green tests; guidance sent while it runs is applied', async () => {
    const commands = readmeCommands('A task from curl to results')
    expect(commands.length).toBe(5)
    const host = server.url
    let taskId = ''
    const local = (command: string) =>
      command.replaceAll('http://gantry.lan:9876', host).replaceAll('task-Xq3…', taskId)

    const [create, logStream, status, guidance, results] = commands as [
      string,
      string,
      string,
      string,
      string,
    ]
    const created = await sh(local(create)).output
    const task = json(created.out)
    expect(task.status).toBe('queued')
    taskId = task.task_id
    expect(taskId).toMatch(/^task-/)
    expect(task.websocket_url).toBe(`${host.replace('http', 'ws')}/ws/${taskId}`)

    // The live log in a terminal of its own, as a person would follow it.
    const log = sh(local(logStream))
    const running = json((await sh(local(status)).output).out)
    expect(running.task_id).toBe(taskId)
    expect(['queued', 'running']).toContain(running.status)
    const steered = json((await sh(local(guidance)).output).out)
    expect(steered).toMatchObject({ task_id: taskId, accepted: true })

    const { out: logText, code: logCode } = await log.output
    expect(logCode).toBe(0)
    expect(logText).toContain('data: [INFO] Task started')
    expect(logText).toContain('data: [INFO] Planning complete: validator.ts, normalize.ts')
    expect(logText).toContain('data: [INFO] Generating validator.ts...')
    expect(logText).toContain('event: end')

    const done = json((await sh(local(results)).output).out)
    expect(done.status).toBe('completed')
    expect(done.modules.map((m: { name: string }) => m.name)).toEqual(['validator.ts', 'normalize.ts'])
    for (const module of done.modules) {
      expect(module.code).toContain('export function')
      expect(module.tests).toContain("from 'bun:test'")
      expect(module.tests).toContain(`from './${module.name}'`)
      expect(module.quality_score).toBe(1)
      expect(module.test_report).toMatchObject({ failed: 0, pass_rate: 1, type_check: true })
      expect(module.test_report.passed).toBeGreaterThanOrEqual(3)
    }

    const events = await server.api(`/api/streams/${taskId}/events?since=0`, {
      headers: { accept: 'application/json' },
      signal: AbortSignal.timeout(5000),
    })
    const types = String(events.body)
      .split('\n')
      .filter((line) => line.startsWith('data: {'))
      .map((line) => JSON.parse(line.slice(6)).type)
    expect(types).toContain('INTERVENTION_APPLIED')
    expect(types.at(-1)).toBe('TASK_COMPLETE')
    expect(types).not.toContain('TASK_FAILED')
  }, 90_000)
})

describe('README: chat with curl, with the default simulator as the model', () => {
  test('the session is created, the question answered and the answer stored', async () => {
    const commands = readmeCommands('Chat with curl').map((command) =>
      command.replaceAll('localhost:9876', server.url.replace('http://', '')),
    )
    const [create, chat] = commands as [string, string]
    expect(json((await sh(create).output).out)).toMatchObject({ name: 'demo', agent: 'researcher' })
    const asked = json((await sh(chat).output).out)
    expect(asked.assistant_message_id).toMatch(/^msg-/)
    const answer = await waitFor(
      async () => {
        const { body } = await server.api('/api/sessions/demo/messages')
        const last = body.messages.at(-1)
        return last?.status === 'complete' && last
      },
      20_000,
      'the stored answer',
    )
    expect(answer.message_id).toBe(asked.assistant_message_id)
    expect(answer.content).toContain('Why is the sky blue?')
  }, 60_000)
})

describe('README: chat with the openai client, with the default simulator as the model', () => {
  test('the streamed completion arrives', async () => {
    const code = readmeBlock('Chat with the `openai` client', 'ts').replaceAll(
      'http://localhost:9876',
      server.url,
    )
    // Run from the project folder, so that `openai` resolves as it does for a reader who installed it.
    const run = Bun.spawn([process.execPath, '-e', `const KEY = ${JSON.stringify(ADMIN_KEY)};\n${code}`], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdout: 'pipe',
      stderr: 'pipe',
    })
    const [out, err, exit] = await Promise.all([
      new Response(run.stdout).text(),
      new Response(run.stderr).text(),
      run.exited,
    ])
    expect(err).toBe('')
    expect(exit).toBe(0)
    expect(out).toContain('Why is the sky blue?')
  }, 60_000)
})

/** A Python that has the `websockets` package (Debian: python3-websockets), if there is one. */
const python = ['python3', '/usr/bin/python3'].find(
  (exe) => Bun.which(exe) && Bun.spawnSync([exe, '-c', 'import websockets']).exitCode === 0,
)

describe('README: the Python WebSocket client, with the default simulator as the model', () => {
  test.skipIf(!python)(
    'runs as written on the installed websockets release',
    async () => {
      const code = readmeBlock('Chat with a stock WebSocket client', 'python').replaceAll(
        'ws://localhost:9876',
        server.url.replace('http', 'ws'),
      )
      const run = Bun.spawn([python!, '-c', code], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', KEY: ADMIN_KEY },
        stdout: 'pipe',
        stderr: 'pipe',
      })
      const timer = setTimeout(() => run.kill(), 30_000)
      const [out, err, exit] = await Promise.all([
        new Response(run.stdout).text(),
        new Response(run.stderr).text(),
        run.exited,
      ])
      clearTimeout(timer)
      expect(err).toBe('')
      expect(exit).toBe(0)
      expect(out).toContain('Connected:')
      expect(out).toContain('Simulated answer to: Hello!')
    },
    60_000,
  )
})
