/**
 * Running model-written code. Model output is untrusted: in `sandbox` mode it runs under bubblewrap (no network,
 * a read-only system, a private /tmp, an empty environment, its own pid namespace, dying with the server) and,
 * when the server runs as root, as an unprivileged uid of its own; in both modes under prlimit limits (CPU
 * seconds, address space, processes, file size, open files), a wall-clock kill and truncated output.
 *
 * Runs share the machine with the server: at most `slots` of them at once (one per core by default, the rest
 * wait in line, see run-slots.ts), each at the lowest CPU priority (`nice -n 19`, and the same for its session
 * where the scheduler groups by session, see lowerSessionPriority), so a request the server has to answer
 * never waits behind a test run for a core.
 */
import { chmodSync, chownSync, lstatSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RunSlots } from './run-slots.ts'
import {
  bunExecutable,
  findExecutable,
  isRoot,
  resolvePackageFile,
  runProbe,
  spawnProcess,
} from './runtime.ts'
import { supervise } from './supervise.ts'
import { type RuntimePaths, WorkFolders } from './workdirs.ts'

export type ExecutionMode = 'sandbox' | 'unsandboxed' | 'off'

export interface SandboxLimits {
  cpuSeconds: number
  memoryBytes: number
  /** Processes and threads (Bun itself uses a dozen threads). */
  processes: number
  fileSizeBytes: number
  /** Size of the private, writable /tmp (sandbox mode). */
  tmpBytes: number
  wallClockMs: number
  /** Output kept (stdout and stderr together); the rest is dropped and counted. */
  outputBytes: number
}

export const DEFAULT_LIMITS: SandboxLimits = {
  cpuSeconds: 20,
  memoryBytes: 4 * 1024 ** 3, // address space: Bun reserves much more than it uses
  processes: 128,
  fileSizeBytes: 16 * 1024 ** 2,
  tmpBytes: 64 * 1024 ** 2,
  wallClockMs: 30_000,
  outputBytes: 64 * 1024,
}

export interface ExecResult {
  exitCode: number | null
  timedOut: boolean
  cancelled: boolean
  output: string
  truncated: boolean
  durationMs: number
}

/** The sandbox itself could not start (bubblewrap refused a bind, say): not the generated code's fault. */
export class SandboxUnavailable extends Error {
  constructor(readonly detail: string) {
    super(`The sandbox could not start, so the tests were not run: ${detail}`)
    this.name = 'SandboxUnavailable'
  }
}

/** Runs a command over a set of files in a fresh private directory. `argv[0]` is `bun` or `tsc`. */
export interface CodeExecutor {
  mode: 'sandbox' | 'unsandboxed'
  /** Whether `tsc` can run (the typescript package is installed). */
  canTypeCheck: boolean
  run(files: Record<string, string>, argv: string[], signal?: AbortSignal): Promise<ExecResult>
}

/** `tsc` over some files: strict, no emit, ES libs only (the DOM's types would triple the time). */
export const typeCheckArgv = (files: string[]): string[] => [
  'tsc',
  '--noEmit',
  '--strict',
  '--skipLibCheck',
  '--target',
  'esnext',
  '--module',
  'esnext',
  '--moduleResolution',
  'bundler',
  '--allowImportingTsExtensions',
  '--lib',
  'esnext',
  ...files,
]

const IN_BUN = '/opt/gantry/bun'
const IN_TS = '/opt/gantry/typescript'
const SYSTEM_DIRS = ['/usr', '/bin', '/lib', '/lib64', '/lib32', '/sbin']
let uidSequence = 0

export interface Execution {
  executor?: CodeExecutor
  problem?: string
  /** Removes this instance's work folder (at stop). */
  close(): void
}

/**
 * The executor for a mode, or a `problem` saying why code cannot run (sandbox mode without bubblewrap, or a
 * probe run that fails). `off` has neither: tests are skipped. Runs happen in folders under `workRoot`
 * (DATA_DIR/sandbox; the system temp dir by default), see workdirs.ts.
 */
export async function createExecutor(
  mode: ExecutionMode,
  opts: {
    bwrap: string
    limits?: Partial<SandboxLimits>
    workRoot?: string
    bun?: string
    /** Runs at once (default: one per core). */
    slots?: number
  },
): Promise<Execution> {
  if (mode === 'off') return { close() {} }
  const limits = { ...DEFAULT_LIMITS, ...opts.limits }
  const slots = new RunSlots(opts.slots)
  const lowPriority = lowPriorityArgs()
  const tscJs = resolvePackageFile('typescript/lib/tsc.js')
  const tsDir = tscJs ? join(tscJs, '..', '..') : undefined
  const prlimit = findExecutable('prlimit')
  const bun = opts.bun ?? bunExecutable()
  let folders = WorkFolders.under(opts.workRoot ?? tmpdir())
  const done = (made: Omit<Execution, 'close'>): Execution => ({ ...made, close: () => folders.remove() })
  if (mode === 'unsandboxed')
    return done({
      executor: inLine(slots, unsandboxed(limits, prlimit, bun, tscJs, folders, lowPriority)),
    })
  const bwrap = findExecutable(opts.bwrap)
  if (!bwrap)
    return done({
      problem: `CODE_EXECUTION=sandbox, but bubblewrap ("${opts.bwrap}") was not found, so generated code will not run. Install bubblewrap (apt install bubblewrap), point SANDBOX_BWRAP at it, or set CODE_EXECUTION=unsandboxed (limits only) or off (skip tests).`,
    })
  if (!prlimit)
    return done({
      problem:
        'CODE_EXECUTION=sandbox, but prlimit (util-linux) was not found, so the sandbox cannot set its limits. Install util-linux.',
    })
  // Probe once: bubblewrap needs user namespaces, which some containers and kernels forbid.
  const probe = (asUid: boolean) =>
    runProbe([
      ...(asUid ? [setpriv!, '--reuid=65534', '--regid=65534', '--clear-groups'] : []),
      bwrap,
      ...PROBE,
    ])
  const setpriv = isRoot() ? findExecutable('setpriv') : undefined
  let ownUid = Boolean(setpriv) && (await probe(true)).exitCode === 0
  if (!ownUid) {
    const plain = await probe(false)
    if (plain.exitCode !== 0)
      return done({
        problem: `CODE_EXECUTION=sandbox, but bubblewrap cannot create its sandbox here (${plain.stderr.trim() || `exit ${plain.exitCode}`}). Allow unprivileged user namespaces, or set CODE_EXECUTION=unsandboxed (limits only) or off.`,
      })
    ownUid = false
  }
  const make = (runtime: RuntimePaths, l = limits) =>
    inLine(slots, sandboxed(l, bwrap, prlimit, runtime, ownUid ? setpriv : undefined, folders, lowPriority))
  // The probe gets time enough on a busy machine: only a sandbox that cannot start may fail it.
  const probeLimits = { ...limits, wallClockMs: 60_000, cpuSeconds: Math.max(limits.cpuSeconds, 20) }
  let runtime: RuntimePaths = { bun, tsDir }
  let failure = await probeRun(make(runtime, probeLimits))
  if (failure?.startsWith('bwrap: ') && ownUid) {
    // The sandbox uid cannot reach a path it binds (a checkout, or DATA_DIR, inside a mode-700 folder):
    // move to a folder of this instance's own in the temp dir, with bun and typescript linked in.
    const portable = WorkFolders.portable(runtime)
    folders.remove()
    folders = portable.folders
    runtime = portable.runtime
    failure = await probeRun(make(runtime, probeLimits))
  }
  if (failure)
    return done({
      problem: `CODE_EXECUTION=sandbox, but a probe run in the sandbox failed, so generated code cannot be tested here: ${failure}. Set CODE_EXECUTION=unsandboxed (limits only) or off (skip tests) if this machine cannot run it.`,
    })
  return done({ executor: make(runtime) })
}

/** The executor's runs, each in a slot of `slots` (waiting for one honours the run's signal). */
const inLine = (slots: RunSlots, executor: CodeExecutor): CodeExecutor => ({
  ...executor,
  run: (files, argv, signal) => slots.use(() => executor.run(files, argv, signal), signal),
})

/** `nice -n 19` before a command (niceness is inherited through exec), or nothing where there is no `nice`. */
function lowPriorityArgs(): string[] {
  const nice = findExecutable('nice')
  return nice ? [nice, '-n', '19'] : []
}

/** Runs a one-line program the way tests run: undefined when it worked, else what went wrong. */
async function probeRun(executor: CodeExecutor): Promise<string | undefined> {
  try {
    const r = await executor.run({ 'probe.ts': "console.log('gantry sandbox ok')\n" }, ['bun', 'probe.ts'])
    if (r.exitCode === 0 && r.output.includes('gantry sandbox ok')) return undefined
    return r.output.trim().slice(0, 500) || `exit ${r.exitCode}${r.timedOut ? ' (timed out)' : ''}`
  } catch (err) {
    return err instanceof SandboxUnavailable ? err.detail : (err as Error).message
  }
}

const PROBE = ['--unshare-all', '--die-with-parent', ...systemBindArgs(), '--', '/bin/sh', '-c', 'exit 0']

/** The system read-only: /usr bound, /bin, /lib… as they are (directories bound, symlinks recreated). */
function systemBindArgs(): string[] {
  const args: string[] = []
  for (const dir of SYSTEM_DIRS) {
    try {
      const st = lstatSync(dir)
      if (st.isSymbolicLink()) args.push('--symlink', readlinkSync(dir), dir)
      else if (st.isDirectory()) args.push('--ro-bind', dir, dir)
    } catch {
      // not on this system
    }
  }
  return args
}

function prlimitArgs(prlimit: string, limits: SandboxLimits): string[] {
  return [
    prlimit,
    `--cpu=${limits.cpuSeconds}`,
    `--as=${limits.memoryBytes}`,
    `--nproc=${limits.processes}`,
    `--fsize=${limits.fileSizeBytes}`,
    '--nofile=256',
    '--core=0',
    '--',
  ]
}

function sandboxed(
  limits: SandboxLimits,
  bwrap: string,
  prlimit: string,
  { bun, tsDir }: RuntimePaths,
  setpriv: string | undefined,
  folders: WorkFolders,
  lowPriority: string[],
): CodeExecutor {
  const systemBinds = systemBindArgs()
  return {
    mode: 'sandbox',
    canTypeCheck: Boolean(tsDir),
    run: (files, argv, signal) =>
      inWorkDir(folders, files, async (dir, chownTo) => {
        // As root, each run gets a uid of its own: process limits then count only this run, and nothing
        // it starts can touch the server's files.
        const uid = setpriv ? 200_000 + ((process.pid % 500) * 1000 + (uidSequence++ % 1000)) : undefined
        if (uid !== undefined) chownTo(uid)
        const inner =
          argv[0] === 'tsc' ? [IN_BUN, `${IN_TS}/lib/tsc.js`, ...argv.slice(1)] : [IN_BUN, ...argv.slice(1)]
        const cmd = [
          ...lowPriority,
          ...(setpriv && uid !== undefined
            ? [setpriv, `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups']
            : []),
          bwrap,
          '--unshare-all',
          '--die-with-parent',
          // No --new-session: the run already is a session of its own with no controlling terminal (the
          // spawn's setsid), so nothing in it can reach a terminal; a second session would be a new autogroup
          // at full CPU weight (see lowerSessionPriority).
          '--clearenv',
          ...systemBinds,
          '--proc',
          '/proc',
          '--dev',
          '/dev',
          '--size',
          String(limits.tmpBytes),
          '--tmpfs',
          '/tmp',
          '--ro-bind',
          bun,
          IN_BUN,
          ...(tsDir ? ['--ro-bind', tsDir, IN_TS] : []),
          '--ro-bind',
          dir,
          '/work',
          '--chdir',
          '/work',
          '--setenv',
          'PATH',
          '/usr/bin:/bin',
          '--setenv',
          'HOME',
          '/tmp',
          '--setenv',
          'TMPDIR',
          '/tmp',
          ...prlimitArgs(prlimit, limits),
          ...inner,
        ]
        // bwrap itself (pid 1 inside) gets no environment either: /proc/1/environ must show nothing.
        const result = await supervise(
          spawnProcess(cmd, { cwd: dir, env: {}, lowPriority: true }),
          limits,
          signal,
        )
        // bubblewrap's own refusal (exit 1, "bwrap: …" before anything ran) is no verdict on the code.
        if (result.exitCode === 1 && result.output.startsWith('bwrap: '))
          throw new SandboxUnavailable(result.output.split('\n')[0]!.trim())
        return result
      }),
  }
}

function unsandboxed(
  limits: SandboxLimits,
  prlimit: string | undefined,
  bun: string,
  tscJs: string | undefined,
  folders: WorkFolders,
  lowPriority: string[],
): CodeExecutor {
  return {
    mode: 'unsandboxed',
    canTypeCheck: Boolean(tscJs),
    run: (files, argv, signal) =>
      inWorkDir(folders, files, async (dir) => {
        const inner = argv[0] === 'tsc' ? [bun, tscJs!, ...argv.slice(1)] : [bun, ...argv.slice(1)]
        const cmd = [...lowPriority, ...(prlimit ? [...prlimitArgs(prlimit, limits), ...inner] : inner)]
        return supervise(
          spawnProcess(cmd, {
            cwd: dir,
            env: { PATH: '/usr/bin:/bin', HOME: dir, TMPDIR: dir },
            lowPriority: true,
          }),
          limits,
          signal,
        )
      }),
  }
}

async function inWorkDir<T>(
  folders: WorkFolders,
  files: Record<string, string>,
  use: (dir: string, chownTo: (uid: number) => void) => Promise<T>,
): Promise<T> {
  const dir = folders.newRun()
  try {
    for (const [name, content] of Object.entries(files)) {
      if (!/^[A-Za-z0-9_.-]+$/.test(name) || name.startsWith('.')) throw new Error(`bad file name ${name}`)
      writeFileSync(join(dir, name), content)
    }
    return await use(dir, (uid) => {
      chownSync(dir, uid, uid)
      chmodSync(dir, 0o700)
      for (const name of Object.keys(files)) chownSync(join(dir, name), uid, uid)
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
