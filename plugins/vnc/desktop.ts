import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '../../src/core/logger.ts'
import {
  BINARIES,
  type Binaries,
  newCookie,
  newPassword,
  vncPasswordFile,
  xauthorityFile,
} from './binaries.ts'
import type { ProcessLedger } from './leftovers.ts'
import { freeLoopbackPort, type GroupProcess, readBanner, signalGroup, spawnGroup } from './runtime.ts'

export type DesktopState = 'stopped' | 'starting' | 'running' | 'failed' | 'unavailable'
export type ProcessName = 'xvfb' | 'wm' | 'x11vnc'

export interface DesktopOptions {
  log: Logger
  binaries: Binaries
  /** Restarts allowed within `restartWindowMs` before the desktop is declared failed. */
  maxRestarts?: number
  restartWindowMs?: number
  /** First backoff delay; doubles with each restart in the window, capped at 5 s. */
  backoffMs?: number
  /** How long Xvfb and x11vnc each get to become ready. */
  readyTimeoutMs?: number
  /** Where the pids are recorded, so that a later server can stop them if this one dies without doing so. */
  ledger?: ProcessLedger
}

export interface DesktopSize {
  width: number
  height: number
  viewOnly: boolean
}

export const DEFAULT_SIZE: DesktopSize = { width: 1280, height: 800, viewOnly: false }

class StartAborted extends Error {}

/**
 * Supervises one virtual desktop: Xvfb on a free display, a window manager when installed, and x11vnc on
 * 127.0.0.1 with a fresh password. A crashed process is restarted with backoff a bounded number of times,
 * then the desktop is `failed`. Each process leads its own process group, so stopping leaves nothing behind.
 */
export class Desktop {
  state: DesktopState
  size: DesktopSize = { ...DEFAULT_SIZE }
  display: number | null = null
  rfbPort: number | null = null
  password: string | null = null
  startedAt: Date | null = null
  restarts = 0
  lastError: string | null = null
  readonly processes = new Map<ProcessName, GroupProcess>()

  private generation = 0
  private authDir: string | null = null
  private recentCrashes: number[] = []
  private settled: Array<() => void> = []
  private readonly stateListeners = new Set<(state: DesktopState) => void>()
  private readonly log: Logger

  constructor(private readonly opts: DesktopOptions) {
    this.log = opts.log.child({ plugin: 'vnc' })
    this.state = this.unavailable ? 'unavailable' : 'stopped'
  }

  get unavailable(): boolean {
    return this.opts.binaries.missing.some(
      (m) => BINARIES.find((b) => b.binary === m.binary)?.needed === 'desktop',
    )
  }

  get binaries(): Binaries {
    return this.opts.binaries
  }

  /** Called on every state change (the bridge closes its sockets when the desktop stops or fails). */
  onState(listener: (state: DesktopState) => void): () => void {
    this.stateListeners.add(listener)
    return () => this.stateListeners.delete(listener)
  }

  /** The X cookie file of the running stack; only Gantry's own X clients are given it. */
  get xauthority(): string {
    if (!this.authDir) throw new Error('the desktop is not started')
    return join(this.authDir, 'Xauthority')
  }

  /** The environment an X client of this desktop needs (xdotool, import): its display and its cookie. */
  clientEnv(): { DISPLAY: string; XAUTHORITY: string } {
    if (this.display === null) throw new Error('the desktop has no display')
    return { DISPLAY: `:${this.display}`, XAUTHORITY: this.xauthority }
  }

  pids(): Array<{ name: ProcessName; pid: number }> {
    return [...this.processes].map(([name, p]) => ({ name, pid: p.pid }))
  }

  /**
   * Starts the stack unless it runs or is starting, and resolves once it is running — or failed, or
   * stopped meanwhile (then it throws). Size and view-only apply to a new start only.
   */
  async start(size: DesktopSize): Promise<void> {
    if (this.state === 'unavailable') throw new Error('the desktop binaries are not installed')
    if (this.state === 'stopped' || this.state === 'failed') {
      this.size = { ...size }
      this.restarts = 0
      this.recentCrashes = []
      this.lastError = null
      if (this.prepare()) {
        this.setState('starting')
        void this.supervise(++this.generation)
      }
    }
    if (this.state === 'starting') await new Promise<void>((resolve) => this.settled.push(resolve))
    if (this.state === 'running') return
    throw new StartAborted(
      this.state === 'failed'
        ? `the desktop failed to start: ${this.lastError ?? 'unknown error'}`
        : 'the desktop was stopped while it was starting',
    )
  }

  /**
   * A fresh password and X cookie in a private folder; false, with the desktop failed, when they cannot be
   * written (a start that fails before any process runs is a failed start, not a stop meanwhile).
   */
  private prepare(): boolean {
    try {
      this.password = newPassword()
      this.authDir = this.opts.ledger?.makeAuthDir() ?? mkdtempSync(join(tmpdir(), 'gantry-vnc-'))
      writeFileSync(join(this.authDir, 'passwd'), vncPasswordFile(this.password), { mode: 0o600 })
      // Without a cookie, Xvfb lets every local user drive the display, past VNC_ALLOWED_ROLES.
      writeFileSync(this.xauthority, xauthorityFile(newCookie()), { mode: 0o600 })
      return true
    } catch (err) {
      this.cleanupAuth()
      this.password = null
      this.lastError = `its password and X cookie could not be written: ${(err as Error).message}`
      this.log.error({ lastError: this.lastError }, 'desktop failed to start')
      this.setState('failed')
      return false
    }
  }

  /** Stops every process of the stack (TERM to each group, KILL after a grace period). */
  async stop(reason = 'stopped'): Promise<boolean> {
    const wasActive = this.state === 'starting' || this.state === 'running'
    if (this.state === 'unavailable') return false
    this.generation++
    await this.killAll()
    this.cleanupAuth()
    this.display = null
    this.rfbPort = null
    this.password = null
    this.startedAt = null
    this.setState('stopped')
    if (wasActive) this.log.info({ reason }, 'desktop stopped')
    return wasActive
  }

  private setState(state: DesktopState): void {
    this.state = state
    if (state !== 'starting') {
      const waiters = this.settled
      this.settled = []
      for (const resolve of waiters) resolve()
    }
    for (const listener of this.stateListeners) listener(state)
  }

  /** The supervision loop of one start: launch what is missing, wait for a crash, back off, repeat. */
  private async supervise(generation: number): Promise<void> {
    const current = () => generation === this.generation
    const window = this.opts.restartWindowMs ?? 60_000
    const maxRestarts = this.opts.maxRestarts ?? 5
    for (;;) {
      let crash: string
      try {
        await this.launch(current)
        if (!current()) return
        this.startedAt ??= new Date()
        this.setState('running')
        const exit = await this.firstExit()
        if (!current()) return
        crash = exit
      } catch (err) {
        if (!current() || err instanceof StartAborted) return
        crash = (err as Error).message
      }
      this.lastError = crash
      const now = Date.now()
      this.recentCrashes = [...this.recentCrashes.filter((at) => now - at < window), now]
      if (this.recentCrashes.length > maxRestarts) {
        this.log.error(
          { restarts: this.restarts, lastError: crash },
          'desktop failed: too many restarts; giving up',
        )
        this.generation++
        await this.killAll()
        this.cleanupAuth()
        this.display = null
        this.rfbPort = null
        this.setState('failed')
        return
      }
      this.restarts++
      const delay = Math.min((this.opts.backoffMs ?? 250) * 2 ** (this.recentCrashes.length - 1), 5000)
      this.log.warn({ restarts: this.restarts, delayMs: delay, lastError: crash }, 'desktop restarting')
      if (this.state !== 'starting') this.setState('starting')
      await sleep(delay)
      if (!current()) return
    }
  }

  /** Starts whichever processes are not running: Xvfb (and everything on it), the window manager, x11vnc. */
  private async launch(current: () => boolean): Promise<void> {
    const { paths, windowManager } = this.opts.binaries
    const timeout = this.opts.readyTimeoutMs ?? 10_000
    // Forget processes that died meanwhile too (x11vnc's exit may be noticed before Xvfb's that caused it).
    for (const [name, proc] of this.processes) if (proc.hasExited()) this.processes.delete(name)
    if (!this.processes.has('xvfb')) {
      // A new X server means a new display: whatever ran on the old one goes with it.
      await this.killAll()
      const { width, height } = this.size
      if (!current()) throw new StartAborted()
      const xvfb = this.spawn('xvfb', current, [
        paths.Xvfb!,
        '-displayfd',
        '1',
        '-screen',
        '0',
        `${width}x${height}x24`,
        '-auth',
        this.xauthority,
        '-nolisten',
        'tcp',
        '-noreset',
      ])
      const display = await this.firstLine(xvfb, timeout, 'Xvfb')
      if (!/^\d+$/.test(display)) throw new Error(`Xvfb reported display "${display}"`)
      this.display = Number(display)
      this.log.info({ display: `:${display}`, pid: xvfb.pid, width, height }, 'Xvfb ready')
    }
    if (!current()) throw new StartAborted()
    if (windowManager && !this.processes.has('wm')) this.spawn('wm', current, [windowManager])
    if (!this.processes.has('x11vnc')) {
      for (let attempt = 1; ; attempt++) {
        const port = freeLoopbackPort()
        const vnc = this.spawn('x11vnc', current, [
          this.opts.binaries.paths.x11vnc!,
          '-display',
          `:${this.display}`,
          '-rfbport',
          String(port),
          '-localhost',
          '-listen',
          '127.0.0.1',
          '-noipv6',
          '-passwdfile',
          join(this.authDir!, 'passwd'),
          '-auth',
          this.xauthority,
          '-forever',
          '-shared',
          '-norc',
          '-quiet',
          '-nonap',
          ...(this.size.viewOnly ? ['-viewonly'] : []),
        ])
        const ready = await this.rfbReady(vnc, port, timeout, current)
        if (ready === true) {
          this.rfbPort = port
          this.log.info({ port, pid: vnc.pid }, 'x11vnc ready')
          return
        }
        if (this.processes.get('x11vnc') === vnc) {
          this.processes.delete('x11vnc')
          signalGroup(vnc.pid, 'SIGKILL')
          await vnc.exited
        }
        // Another process may have taken the port between our probe and x11vnc's bind: try another once.
        if (attempt >= 2 || !current()) throw new Error(ready)
      }
    }
  }

  private spawn(name: ProcessName, current: () => boolean, argv: string[]): GroupProcess {
    // A stop that happened while this start awaited something must not be outlived by a new process.
    if (!current()) throw new StartAborted()
    const env = {
      ...process.env,
      ...this.opts.ledger?.env,
      ...(name === 'xvfb' ? { DISPLAY: undefined, XAUTHORITY: undefined } : this.clientEnv()),
    }
    const proc = spawnGroup(argv, { env, readStdout: name === 'xvfb' })
    this.processes.set(name, proc)
    this.opts.ledger?.record(this.pids().map((p) => p.pid))
    this.log.info({ process: name, pid: proc.pid, argv: argv.slice(0, 1) }, 'desktop process started')
    return proc
  }

  /** The first stdout line of a process (Xvfb's display number), or why it never came. */
  private async firstLine(proc: GroupProcess, timeoutMs: number, what: string): Promise<string> {
    const iterator = proc.lines![Symbol.asyncIterator]()
    const line = await Promise.race([
      iterator.next().then((r) => (r.done ? null : r.value.trim())),
      proc.exited.then(() => null),
      sleep(timeoutMs).then(() => 'timeout' as const),
    ])
    if (line === 'timeout') throw new Error(`${what} was not ready within ${timeoutMs} ms`)
    if (line === null) throw new Error(`${what} exited at start: ${this.describeExit('xvfb', proc)}`)
    return line
  }

  /** Polls until x11vnc answers with an RFB banner: true, or the reason it did not. */
  private async rfbReady(
    proc: GroupProcess,
    port: number,
    timeoutMs: number,
    current: () => boolean,
  ): Promise<true | string> {
    let exited = false
    proc.exited.then(() => {
      exited = true
    })
    const until = Date.now() + timeoutMs
    while (Date.now() < until && current()) {
      const banner = await readBanner(port, 12, 500)
      if (banner?.startsWith('RFB ')) return true
      if (exited) {
        if (this.processes.get('x11vnc') === proc) this.processes.delete('x11vnc')
        return `x11vnc exited at start: ${this.describeExit('x11vnc', proc)}`
      }
      await sleep(30)
    }
    return `x11vnc did not answer on 127.0.0.1:${port} within ${timeoutMs} ms`
  }

  /** Resolves when any process of the stack exits, with a description; that process is forgotten. */
  private async firstExit(): Promise<string> {
    const entries = [...this.processes]
    let [name, proc] = await Promise.race(
      entries.map(([name, proc]) => proc.exited.then(() => [name, proc] as const)),
    )
    // When the X server is gone, it is the cause, whichever exit was noticed first.
    const xvfb = this.processes.get('xvfb')
    if (name !== 'xvfb' && xvfb?.hasExited()) [name, proc] = ['xvfb', xvfb]
    const description = `${name === 'xvfb' ? 'Xvfb' : name} (pid ${proc.pid}) exited: ${this.describeExit(name, proc)}`
    this.log.warn({ process: name, pid: proc.pid, tail: proc.tail().slice(-5) }, 'desktop process exited')
    if (this.processes.get(name) === proc) this.processes.delete(name)
    return description
  }

  private describeExit(_name: ProcessName, proc: GroupProcess): string {
    const signal = proc.signalCode()
    const tail = proc.tail().filter((l) => !/^\s*$/.test(l))
    const last = tail.at(-1)
    return `${signal ? `killed by ${signal}` : 'exited'}${last ? ` (${last.trim()})` : ''}`
  }

  /**
   * Stops every process group and waits until each has exited: the X clients (x11vnc, the window manager)
   * first, then Xvfb, so that no client trips over the display vanishing. TERM, then KILL after a grace period.
   */
  private async killAll(): Promise<void> {
    const procs = [...this.processes]
    this.processes.clear()
    if (!procs.length) return
    const clients = procs.filter(([name]) => name !== 'xvfb')
    const servers = procs.filter(([name]) => name === 'xvfb')
    await Promise.all(clients.map(([name, proc]) => this.terminate(name, proc, 1000)))
    // Xvfb removes its display lock and socket on TERM; KILL would leave them behind.
    await Promise.all(servers.map(([name, proc]) => this.terminate(name, proc, 3000)))
    // Recorded as gone only now: had this server died meanwhile, the ledger still lists them.
    this.opts.ledger?.record(this.pids().map((p) => p.pid))
  }

  private async terminate(name: ProcessName, proc: GroupProcess, graceMs: number): Promise<void> {
    signalGroup(proc.pid, 'SIGTERM')
    const gone = await Promise.race([proc.exited.then(() => true), sleep(graceMs).then(() => false)])
    if (!gone) {
      this.log.warn({ process: name, pid: proc.pid }, 'desktop process ignored SIGTERM; killing')
      signalGroup(proc.pid, 'SIGKILL')
      await proc.exited
    }
    // Anything the leader started in its group (none expected) goes with it.
    signalGroup(proc.pid, 'SIGKILL')
    this.log.info({ process: name, pid: proc.pid }, 'desktop process stopped')
  }

  private cleanupAuth(): void {
    if (this.authDir) rmSync(this.authDir, { recursive: true, force: true })
    this.authDir = null
  }
}
