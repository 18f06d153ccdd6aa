import { describe, expect, test } from 'bun:test'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import pino from 'pino'
import { HttpError } from '../../src/core/errors.ts'
import { captureLog, processAlive, tempDir } from '../../test/helpers.ts'
import { findBinaries } from './binaries.ts'
import { Desktop } from './desktop.ts'
import type { ProcessLedger } from './leftovers.ts'
import { connectDesktop } from './service.ts'

const alive = processAlive

describe('the desktop supervisor', () => {
  test('a start whose password and cookie cannot be written fails (503 with the reason), not a 409', async () => {
    const log = captureLog()
    const dir = tempDir('gantry-vncpw-')
    // The private folder is not there to write into (on Deno, DES for an -rfbauth file failed the same way).
    const ledger = {
      env: {},
      makeAuthDir: () => join(dir, 'missing', 'auth'),
      record() {},
    } as unknown as ProcessLedger
    const desktop = new Desktop({ log: pino(log.stream), binaries: findBinaries(), ledger })
    try {
      const refused = await connectDesktop(desktop, { width: 640, height: 480 }).catch((err) => err)
      expect(refused).toBeInstanceOf(HttpError)
      expect(refused.status).toBe(503)
      expect(refused.message).toContain('could not be written')
      expect(desktop.state).toBe('failed')
      expect(desktop.lastError).toContain('ENOENT')
      expect(desktop.processes.size).toBe(0)
      expect(log.records().some((r) => r.msg === 'desktop failed to start')).toBe(true)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('a process that keeps crashing is restarted a bounded number of times, then failed; nothing is left', async () => {
    const log = captureLog()
    const binaries = findBinaries()
    // x11vnc replaced by a program that exits at once: every start of it fails.
    binaries.paths.x11vnc = Bun.which('false')!
    const desktop = new Desktop({ log: pino(log.stream), binaries, maxRestarts: 2, backoffMs: 10 })
    const started = desktop.start({ width: 640, height: 480, viewOnly: false })
    await expect(started).rejects.toThrow('failed to start')
    expect(desktop.state).toBe('failed')
    expect(desktop.restarts).toBe(2)
    expect(desktop.lastError).toContain('x11vnc exited at start')
    expect(desktop.processes.size).toBe(0)
    const records = log.records()
    const xvfb = records.filter((r) => r.msg === 'desktop process started' && r.process === 'xvfb')
    expect(xvfb.length).toBeGreaterThanOrEqual(1)
    for (const r of xvfb) expect(alive(r.pid)).toBe(false)
    expect(records.filter((r) => r.msg === 'desktop restarting')).toHaveLength(2)
    expect(records.some((r) => r.msg === 'desktop failed: too many restarts; giving up')).toBe(true)
    // From failed, a new start is allowed (and fails the same way here); stop is clean either way.
    expect(await desktop.stop()).toBe(false)
    expect(desktop.state).toBe('stopped')
  }, 30_000)

  test('Xvfb killed → the whole stack comes back on a display of its own', async () => {
    const log = captureLog()
    const desktop = new Desktop({ log: pino(log.stream), binaries: findBinaries(), backoffMs: 10 })
    try {
      await desktop.start({ width: 640, height: 480, viewOnly: false })
      const xvfb = desktop.processes.get('xvfb')!.pid
      const vnc = desktop.processes.get('x11vnc')!.pid
      process.kill(xvfb, 'SIGKILL')
      const until = Date.now() + 15_000
      while (
        !(
          desktop.state === 'running' &&
          desktop.processes.get('xvfb')?.pid !== xvfb &&
          desktop.processes.size >= 2
        )
      ) {
        if (Date.now() > until) throw new Error(`still ${desktop.state} after Xvfb was killed`)
        await Bun.sleep(20)
      }
      expect(desktop.restarts).toBeGreaterThanOrEqual(1)
      // Usually Xvfb's exit; x11vnc losing its display (XIO error) may be noticed first.
      expect(desktop.lastError).toMatch(/Xvfb|XIO/)
      expect(alive(vnc)).toBe(false)
    } finally {
      await desktop.stop()
    }
    expect(desktop.processes.size).toBe(0)
  }, 30_000)
})
