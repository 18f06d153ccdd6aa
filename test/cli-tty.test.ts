import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { good, planReply, straight } from '../plugins/tasks/testing.ts'
import { type CliWorld, gantryInTmux, startCliWorld } from '../src/cli/gantry/testing.ts'
import { ADMIN_KEY, waitFor } from './helpers.ts'

// `gantry task … --follow` in a real pseudo-terminal (a tmux pane), read back as the screen a person sees.

let world: CliWorld
const panes: { close(): void }[] = []
beforeAll(async () => {
  world = await startCliWorld()
}, 30_000)
afterAll(async () => {
  for (const p of panes) p.close()
  await world.stop()
}, 30_000)

const pane = async (args: string[], size?: { width: number; height: number }) => {
  const p = await gantryInTmux(args, world.env(), size)
  panes.push(p)
  return p
}

const taskIdOn = (screen: string) => /(task-[\w-]+)/.exec(screen)![1]!

describe('--follow on a terminal', () => {
  test('draws a bar per module with tests, iteration and quality, in colour, and exits 0', async () => {
    const goal = 'TTY statistics library'
    world.model.on(goal, straight(['mathutil', 'stats']))
    const p = await pane(['task', goal, '--follow'])
    expect(await p.exitCode(90_000)).toBe(0)
    const screen = p.capture()
    const id = taskIdOn(screen)
    const lines = screen.split('\n').map((l) => l.trimEnd())
    expect(lines[0]).toBe(`${id}  "${goal}"  with llama3.2`)
    expect(lines).toContain(' ● complete in ' + /complete in (\S+)/.exec(screen)![1])
    expect(lines).toContain(' ✓ mathutil.ts  ████████████████████  tests 100%  iteration 1/3  quality 1.00')
    expect(lines).toContain(' ✓ stats.ts     ████████████████████  tests 100%  iteration 1/3  quality 1.00')
    expect(lines).toContain(`${id} completed`)
    // Each bar is drawn once at the end, not once per repaint.
    expect(lines.filter((l) => l.includes('mathutil.ts  █'))).toHaveLength(1)
    expect(p.captureAnsi()).toContain('\x1b[32m✓')
  }, 120_000)

  test('a narrow terminal: every line is clipped to its width, none garbled by wrapping', async () => {
    const goal = 'TTY narrow library'
    world.model.on(goal, straight(['mathutil']))
    const p = await pane(['task', goal, '--follow'], { width: 50, height: 20 })
    expect(await p.exitCode(90_000)).toBe(0)
    const lines = p
      .capture()
      .split('\n')
      .map((l) => l.trimEnd())
    expect(lines).toContain(' ✓ mathutil.ts  ████████████████████  tests 100%…')
    expect(lines.find((l) => l.startsWith('mathutil.ts complete'))).toBe(
      'mathutil.ts complete: quality 1.00 after 1 itera…',
    )
  }, 120_000)

  test('Ctrl-C asks; "w" stops watching (exit 130) and the task goes on', async () => {
    const goal = 'TTY task watched for a while'
    world.model.on(goal, ({ step }) =>
      step === 'plan' ? { content: planReply(['mathutil']) } : { ...good('mathutil'), delayMs: 3000 },
    )
    const p = await pane(['task', goal, '--follow'])
    await p.waitForScreen(/mathutil\.ts/)
    p.sendKeys('C-c')
    const asked = await p.waitForScreen(
      /\[c\] cancel task-[\w-]+, \[w\] stop watching \(it goes on\), \[k\] keep watching\?/,
    )
    const id = taskIdOn(asked)
    p.sendKeys('w')
    expect(await p.exitCode()).toBe(130)
    expect(p.capture()).toContain(
      `stopped watching; ${id} goes on. Follow it again: gantry task follow ${id}`,
    )
    await waitFor(
      async () => (await world.server.api(`/tasks/${id}`)).body.status === 'completed',
      60_000,
      'the task to complete',
    )
  }, 120_000)

  test('Ctrl-C, then "c" cancels the task: the follower shows it and exits 1', async () => {
    const goal = 'TTY task to cancel'
    world.model.on(goal, ({ step }) =>
      step === 'plan' ? { content: planReply(['mathutil']) } : { ...good('mathutil'), delayMs: 30_000 },
    )
    const p = await pane(['task', goal, '--follow'])
    await p.waitForScreen(/writing mathutil\.ts|Generating mathutil\.ts/)
    p.sendKeys('C-c')
    await p.waitForScreen(/keep watching\?/)
    p.sendKeys('c')
    expect(await p.exitCode()).toBe(1)
    const screen = p.capture()
    expect(screen).toMatch(/cancelling task-[\w-]+…/)
    expect(screen).toMatch(/● cancelled/)
    expect(screen).toMatch(/✗ mathutil\.ts/)
    expect(screen).toMatch(/task-[\w-]+ cancelled: cancelled on request/)
  }, 120_000)
})

describe('chat on a terminal', () => {
  test('the prompt takes a line, the answer streams in, Ctrl-D leaves with exit 0', async () => {
    world.model.on('Tell me about the sky', () => ({ content: 'It is blue, mostly.', tokensPerSecond: 100 }))
    const p = await pane(['chat', '--session', 'tty-chat'])
    await p.waitForScreen(/^you›/m)
    p.sendKeys('Tell me about the sky', 'Enter')
    const screen = await p.waitForScreen(/^It is blue, mostly\.\nyou›/m)
    expect(screen).toContain('session tty-chat with assistant; Ctrl-C stops an answer, Ctrl-D leaves')
    p.sendKeys('C-d')
    expect(await p.exitCode()).toBe(0)
  }, 60_000)
})

describe('chat on a terminal, interrupted', () => {
  test('Ctrl-C during an answer stops it, keeps the part so far, and the prompt comes back', async () => {
    world.model.on('Count slowly to fifty', () => ({
      content: Array.from({ length: 50 }, (_, i) => `${i + 1}`).join(' '),
      tokensPerSecond: 5,
    }))
    const p = await pane(['chat', '--session', 'tty-chat-cancel'])
    await p.waitForScreen(/^you›/m)
    p.sendKeys('Count slowly to fifty', 'Enter')
    await p.waitForScreen(/^1 2/m)
    p.sendKeys('C-c')
    const screen = await p.waitForScreen(/\(answer cancelled\)\nyou›/m)
    expect(screen).not.toContain('50')
    p.sendKeys('C-d')
    expect(await p.exitCode()).toBe(0)
    const messages = (await world.server.api('/api/sessions/tty-chat-cancel/messages')).body.messages
    expect(messages.at(-1)).toMatchObject({ role: 'assistant', incomplete: true })
  }, 60_000)
})

describe('login on a terminal', () => {
  test('the key is asked for without echo, checked and saved', async () => {
    const p = await pane(['login', '--url', world.server.url])
    await p.waitForScreen(/API key for http:\/\/127\.0\.0\.1:\d+:/, 15_000)
    p.sendKeys(ADMIN_KEY, 'Enter')
    expect(await p.exitCode()).toBe(0)
    const screen = p.capture()
    expect(screen).toContain(`logged in to ${world.server.url} as admin (admin)`)
    expect(screen).not.toContain(ADMIN_KEY)
    expect(screen).not.toContain('test-admin-key')
  }, 30_000)
})
