import { randomUUID } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from '../../src/core/logger.ts'
import { processAlive, processHasEnv, signalGroup } from './runtime.ts'

const MARKER = 'GANTRY_DESKTOP_ID'

/**
 * Remembers, under DATA_DIR, which desktop processes this server started, each marked in its environment.
 * A server that dies without stopping them (SIGKILL, OOM) leaves them running as their own process groups;
 * the next server on that DATA_DIR stops those of dead owners only — never another live instance's.
 */
export class ProcessLedger {
  private readonly id = randomUUID()
  private readonly file: string

  constructor(private readonly dir: string) {
    this.file = join(dir, `${process.pid}-${this.id}.json`)
  }

  /** The environment entry that marks a process as ours. */
  get env(): Record<string, string> {
    return { [MARKER]: this.id }
  }

  /**
   * A private folder (0700) for this server's VNC password file, beside its ledger entry: if the server dies,
   * the next one's sweep removes it with the processes.
   */
  makeAuthDir(): string {
    const dir = join(this.dir, `${process.pid}-${this.id}.auth`)
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    return dir
  }

  record(pids: number[]): void {
    try {
      mkdirSync(this.dir, { recursive: true })
      if (pids.length) writeFileSync(this.file, JSON.stringify({ owner: process.pid, id: this.id, pids }))
      else rmSync(this.file, { force: true })
    } catch {
      // best effort: the ledger only helps clean up after a crash
    }
  }

  /** Stops the desktop processes left by servers that are gone; returns their pids. */
  sweep(log: Logger): number[] {
    const stopped: number[] = []
    let names: string[] = []
    try {
      names = readdirSync(this.dir)
    } catch {
      return stopped
    }
    for (const name of names) {
      const path = join(this.dir, name)
      if (name.endsWith('.auth')) {
        // A password folder whose server is gone (its name starts with that server's pid).
        const owner = Number(name.split('-')[0])
        if (!(owner > 0 && processAlive(owner))) rmSync(path, { recursive: true, force: true })
        continue
      }
      if (!name.endsWith('.json')) continue
      try {
        const entry = JSON.parse(readFileSync(path, 'utf8')) as { owner: number; id: string; pids: number[] }
        if (processAlive(entry.owner)) continue
        const marker = `${MARKER}=${entry.id}`
        for (const pid of entry.pids)
          if (processHasEnv(pid, marker) && signalGroup(pid, 'SIGTERM')) {
            stopped.push(pid)
            // TERM lets Xvfb remove its display lock; whatever ignores it is killed a little later.
            setTimeout(() => processHasEnv(pid, marker) && signalGroup(pid, 'SIGKILL'), 2000).unref?.()
          }
        rmSync(path, { force: true })
      } catch {
        rmSync(path, { force: true })
      }
    }
    if (stopped.length)
      log.warn({ plugin: 'vnc', pids: stopped }, 'stopped desktop processes left by a server that died')
    return stopped
  }
}
