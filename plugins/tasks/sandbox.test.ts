import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { type CodeExecutor, createExecutor, typeCheckArgv } from './sandbox.ts'

const SECRET = `gantry-secret-${Math.random().toString(36).slice(2)}`
const limits = { wallClockMs: 4000, cpuSeconds: 3 }
let sandbox: CodeExecutor
/** The same sandbox with a generous wall clock, for runs that must finish on a busy machine. */
let patient: CodeExecutor
let unsandboxed: CodeExecutor
let listener: Bun.TCPSocketListener<undefined>
let connections = 0
const closers: (() => void)[] = []

/** Whether a new session's autogroup nice value can be raised here (tried on a throwaway shell in a session of its own). */
function sessionNiceIsSettable(): boolean {
  const child = spawnSync(
    '/bin/sh',
    ['-c', "setsid sh -c 'echo 19 > /proc/$$/autogroup && cat /proc/$$/autogroup'"],
    {
      encoding: 'utf8',
    },
  )
  return / nice 19\b/.test(child.stdout ?? '')
}

beforeAll(async () => {
  process.env.GANTRY_TEST_SECRET = SECRET // what the generated code must not see
  const made = await createExecutor('sandbox', { bwrap: 'bwrap', limits })
  if (!made.executor) throw new Error(made.problem)
  sandbox = made.executor
  const slow = await createExecutor('sandbox', { bwrap: 'bwrap', limits: { wallClockMs: 60_000 } })
  patient = slow.executor!
  const plain = await createExecutor('unsandboxed', { bwrap: 'bwrap', limits })
  unsandboxed = plain.executor!
  closers.push(made.close, slow.close, plain.close)
  listener = Bun.listen({
    hostname: '127.0.0.1',
    port: 0,
    socket: {
      open() {
        connections++
      },
      data() {},
    },
  })
})
afterAll(() => {
  for (const close of closers) close()
  delete process.env.GANTRY_TEST_SECRET
  listener.stop(true)
})

const testFile = (body: string) => ({
  'probe.test.ts': `import { expect, test } from 'bun:test'\n${body}\n`,
})

/** Processes (outside the sandbox too) whose command line carries `marker`. */
function processesWith(marker: string): number {
  let n = 0
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker)) n++
    } catch {
      // gone
    }
  }
  return n
}

describe('sandbox', () => {
  test('runs bun:test files and reports passes and failures', async () => {
    const r = await patient.run(
      {
        'add.ts': 'export const add = (a: number, b: number) => a + b\n',
        ...testFile(
          `import { add } from './add.ts'\ntest('adds', () => expect(add(1, 2)).toBe(3))\ntest('wrong', () => expect(add(1, 2)).toBe(4))`,
        ),
      },
      ['bun', 'test', './probe.test.ts'],
    )
    expect(r.output).toMatch(/\b1 pass\b/)
    expect(r.output).toMatch(/\b1 fail\b/)
    expect(r.exitCode).toBe(1)
    expect(r.timedOut).toBe(false)
  })

  test('type checks with tsc', async () => {
    expect(patient.canTypeCheck).toBe(true)
    const ok = await patient.run({ 'a.ts': 'export const n: number = 1\n' }, typeCheckArgv(['a.ts']))
    expect(ok.exitCode).toBe(0)
    const bad = await patient.run({ 'a.ts': 'export const n: number = "x"\n' }, typeCheckArgv(['a.ts']))
    expect(bad.exitCode).not.toBe(0)
    expect(bad.output).toContain('TS2322')
  }, 60_000) // two tsc runs: seconds each on a busy machine

  test('no network: a socket to the host (loopback) fails and nothing arrives', async () => {
    const port = listener.port
    const r = await sandbox.run(
      testFile(`test('connect', async () => {
  const viaFetch = await fetch('http://127.0.0.1:${port}/').then(() => 'connected', (e) => 'refused: ' + e.message)
  const viaTcp = await Bun.connect({ hostname: '127.0.0.1', port: ${port}, socket: { data() {} } }).then(() => 'connected', (e) => 'refused: ' + e.message)
  expect(viaFetch).toBe('connected')
  expect(viaTcp).toBe('connected')
})`),
      ['bun', 'test', './probe.test.ts'],
    )
    expect(r.output).toMatch(/\b1 fail\b/)
    expect(r.output).toContain('refused')
    expect(connections).toBe(0)
  })

  test("the server's environment is invisible: process.env and /proc/1/environ", async () => {
    const r = await sandbox.run(
      testFile(`import { readFileSync } from 'node:fs'
test('steal', () => {
  const env = JSON.stringify(process.env)
  let init = ''
  try { init = readFileSync('/proc/1/environ', 'utf8') } catch (e) { init = 'unreadable' }
  let parent = ''
  try { parent = readFileSync('/proc/' + process.ppid + '/environ', 'utf8') } catch (e) { parent = 'unreadable' }
  console.log('ENV', env, 'INIT', init, 'PARENT', parent)
  expect(env + init + parent).toContain('GANTRY_TEST_SECRET')
})`),
      ['bun', 'test', './probe.test.ts'],
    )
    expect(r.output).toContain('ENV')
    expect(r.output).not.toContain(SECRET)
    expect(r.output).toMatch(/\b1 fail\b/)
  })

  test('a run is at the bottom of the CPU: its processes at nice 19, and its session too', async () => {
    // With autogroup scheduling every session weighs the same whatever its processes' niceness, so the
    // session's own nice value is what keeps two runs from taking two thirds of the cores from the server.
    const probe = testFile(`import { existsSync, readFileSync } from 'node:fs'
import { getPriority } from 'node:os'
test('priority', () => {
  const group = existsSync('/proc/self/autogroup') ? readFileSync('/proc/self/autogroup', 'utf8').trim() : 'none'
  console.log('PRIORITY', getPriority(), 'GROUP', group)
})`)
    // Where autogroup is built in, whether this machine lets a session's nice value be raised is probed on a
    // throwaway session first (a container may mount /proc read-only): the runs must match what the machine
    // allows, and the server's own session must come out as it went in, whatever the CI runner gave it.
    const ownBefore = existsSync('/proc/self/autogroup')
      ? readFileSync('/proc/self/autogroup', 'utf8').trim()
      : ''
    const settable = ownBefore !== '' && sessionNiceIsSettable()
    for (const executor of [patient, unsandboxed]) {
      const r = await executor.run(probe, ['bun', 'test', './probe.test.ts'])
      const line = r.output.match(/PRIORITY .*/)?.[0] ?? r.output
      expect(line).toContain('PRIORITY 19 GROUP')
      if (settable) expect(line).toMatch(/GROUP \/autogroup-\d+ nice 19\b/)
      // …a session of its own, not the server's (whose own session is untouched)
      if (ownBefore) {
        expect(line).not.toContain(`GROUP ${ownBefore.split(' ')[0]} `)
        expect(readFileSync('/proc/self/autogroup', 'utf8').trim()).toBe(ownBefore)
      }
    }
  })

  test('a fork bomb is stopped and leaves nothing behind', async () => {
    const marker = `bomb${Math.random().toString(36).slice(2, 8)}`
    const t0 = Date.now()
    const r = await sandbox.run(
      testFile(`test('bomb', async () => {
  const kids = []
  for (let i = 0; i < 5000; i++) {
    try { kids.push(Bun.spawn(['/bin/sh', '-c', 'sleep 60 # ${marker}'])) } catch (e) { console.log('spawn refused', i) ; break }
  }
  await Bun.sleep(60_000)
}, 120_000)`),
      ['bun', 'test', './probe.test.ts'],
    )
    // Stopped by the process limit (Bun cannot even start its threads) or by the wall clock: never a pass.
    expect(Date.now() - t0).toBeLessThan(limits.wallClockMs + 3000)
    expect(r.exitCode === 0).toBe(false)
    expect(r.output).not.toMatch(/\b1 pass\b/)
    await Bun.sleep(200)
    expect(processesWith(marker)).toBe(0)
  })

  test('an endless loop is killed by the CPU or wall-clock limit', async () => {
    const t0 = Date.now()
    const r = await sandbox.run(testFile(`test('spin', () => { for (;;) {} }, 600_000)`), [
      'bun',
      'test',
      './probe.test.ts',
    ])
    expect(Date.now() - t0).toBeLessThan(limits.wallClockMs + 3000)
    expect(r.exitCode === 0).toBe(false)
    expect(r.output).not.toMatch(/\b1 pass\b/)
  })

  test('writing without end is stopped: file size limit, and output is truncated', async () => {
    const file = await sandbox.run(
      testFile(`import { appendFileSync } from 'node:fs'
test('fill disk', () => { const mb = 'x'.repeat(1 << 20); for (;;) appendFileSync('/tmp/fill', mb) }, 600_000)`),
      ['bun', 'test', './probe.test.ts'],
    )
    expect(file.output).not.toMatch(/\b1 pass\b/)
    expect(file.exitCode === 0).toBe(false)
    const flood = await sandbox.run(
      testFile(
        `test('flood', () => { const line = 'y'.repeat(10_000); for (let i = 0; i < 20_000; i++) console.log(line) }, 600_000)`,
      ),
      ['bun', 'test', './probe.test.ts'],
    )
    expect(flood.truncated).toBe(true)
    expect(flood.output.length).toBeLessThan(70 * 1024)
    expect(flood.output).toContain('output truncated')
    // Two runs, each bounded by the 4 s wall clock: on a machine others keep busy a run at the bottom of the
    // CPU can use most of it.
  }, 15_000)

  test('the work dir is read-only and private; the system is read-only', async () => {
    const r = await sandbox.run(
      testFile(`import { writeFileSync } from 'node:fs'
test('write', () => {
  const tries = ['/work/x', '/usr/x', '/etc/x']
  for (const p of tries) { try { writeFileSync(p, 'x'); console.log('WROTE', p) } catch { console.log('DENIED', p) } }
})`),
      ['bun', 'test', './probe.test.ts'],
    )
    expect(r.output).not.toContain('WROTE')
    expect(r.output.match(/DENIED/g)?.length).toBe(3)
  })

  test('cancel kills the run within a second', async () => {
    const ac = new AbortController()
    const t0 = Date.now()
    setTimeout(() => ac.abort(), 300)
    const r = await sandbox.run(
      testFile(`test('wait', async () => { await Bun.sleep(60_000) }, 120_000)`),
      ['bun', 'test', './probe.test.ts'],
      ac.signal,
    )
    expect(r.cancelled).toBe(true)
    expect(Date.now() - t0).toBeLessThan(1300)
  })

  test('unsandboxed runs with limits alone; sandbox without bubblewrap refuses and says so', async () => {
    const r = await unsandboxed.run(testFile(`test('ok', () => expect(1).toBe(1))`), [
      'bun',
      'test',
      './probe.test.ts',
    ])
    expect(r.output).toMatch(/\b1 pass\b/)
    const spin = await unsandboxed.run(testFile(`test('spin', () => { for (;;) {} }, 600_000)`), [
      'bun',
      'test',
      './probe.test.ts',
    ])
    expect(spin.exitCode === 0).toBe(false)
    const missing = await createExecutor('sandbox', { bwrap: '/nonexistent/bwrap' })
    expect(missing.executor).toBeUndefined()
    expect(missing.problem).toContain('CODE_EXECUTION=sandbox')
    expect(missing.problem).toContain('bubblewrap')
    missing.close()
    expect((await createExecutor('off', { bwrap: 'bwrap' })).executor).toBeUndefined()
  })
})
