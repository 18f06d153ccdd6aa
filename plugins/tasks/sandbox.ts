/**
 * Running model-written code. Model output is untrusted: in `sandbox` mode it runs under bubblewrap (no network,
 * a read-only system, a private /tmp, an empty environment, its own pid namespace, dying with the server) and,
 * when the server runs as root, as an unprivileged uid of its own; in both modes under prlimit limits (CPU
 * seconds, address space, processes, file size, open files), a wall-clock kill and truncated output.
 */
import { chmodSync, chownSync, lstatSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  bunExecutable,
  type ChildProcess,
  findExecutable,
  isRoot,
  resolvePackageFile,
  runProbe,
  spawnProcess,
} from './runtime.ts'

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

/**
 * The executor for a mode, or a `problem` saying why code cannot run (sandbox mode without bubblewrap).
 * `off` has neither: tests are skipped.
 */
export async function createExecutor(
  mode: ExecutionMode,
  opts: { bwrap: string; limits?: Partial<SandboxLimits> },
): Promise<{ executor?: CodeExecutor; problem?: string }> {
  if (mode === 'off') return {}
  const limits = { ...DEFAULT_LIMITS, ...opts.limits }
  const tscJs = resolvePackageFile('typescript/lib/tsc.js')
  const tsDir = tscJs ? join(tscJs, '..', '..') : undefined
  const prlimit = findExecutable('prlimit')
  if (mode === 'unsandboxed') return { executor: unsandboxed(limits, prlimit, tscJs) }
  const bwrap = findExecutable(opts.bwrap)
  if (!bwrap)
    return {
      problem: `CODE_EXECUTION=sandbox, but bubblewrap ("${opts.bwrap}") was not found, so generated code will not run. Install bubblewrap (apt install bubblewrap), point SANDBOX_BWRAP at it, or set CODE_EXECUTION=unsandboxed (limits only) or off (skip tests).`,
    }
  if (!prlimit)
    return {
      problem:
        'CODE_EXECUTION=sandbox, but prlimit (util-linux) was not found, so the sandbox cannot set its limits. Install util-linux.',
    }
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
      return {
        problem: `CODE_EXECUTION=sandbox, but bubblewrap cannot create its sandbox here (${plain.stderr.trim() || `exit ${plain.exitCode}`}). Allow unprivileged user namespaces, or set CODE_EXECUTION=unsandboxed (limits only) or off.`,
      }
    ownUid = false
  }
  return { executor: sandboxed(limits, bwrap, prlimit, tsDir, ownUid ? setpriv : undefined) }
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
  tsDir: string | undefined,
  setpriv: string | undefined,
): CodeExecutor {
  const systemBinds = systemBindArgs()
  return {
    mode: 'sandbox',
    canTypeCheck: Boolean(tsDir),
    run: (files, argv, signal) =>
      inWorkDir(files, async (dir, chownTo) => {
        // As root, each run gets a uid of its own: process limits then count only this run, and nothing
        // it starts can touch the server's files.
        const uid = setpriv ? 200_000 + ((process.pid % 500) * 1000 + (uidSequence++ % 1000)) : undefined
        if (uid !== undefined) chownTo(uid)
        const inner =
          argv[0] === 'tsc' ? [IN_BUN, `${IN_TS}/lib/tsc.js`, ...argv.slice(1)] : [IN_BUN, ...argv.slice(1)]
        const cmd = [
          ...(setpriv && uid !== undefined
            ? [setpriv, `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups']
            : []),
          bwrap,
          '--unshare-all',
          '--die-with-parent',
          '--new-session',
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
          bunExecutable(),
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
        return supervise(spawnProcess(cmd, { cwd: dir, env: {} }), limits, signal)
      }),
  }
}

function unsandboxed(limits: SandboxLimits, prlimit: string | undefined, tscJs?: string): CodeExecutor {
  return {
    mode: 'unsandboxed',
    canTypeCheck: Boolean(tscJs),
    run: (files, argv, signal) =>
      inWorkDir(files, async (dir) => {
        const inner =
          argv[0] === 'tsc'
            ? [bunExecutable(), tscJs!, ...argv.slice(1)]
            : [bunExecutable(), ...argv.slice(1)]
        const cmd = prlimit ? [...prlimitArgs(prlimit, limits), ...inner] : inner
        return supervise(
          spawnProcess(cmd, { cwd: dir, env: { PATH: '/usr/bin:/bin', HOME: dir, TMPDIR: dir } }),
          limits,
          signal,
        )
      }),
  }
}

async function inWorkDir<T>(
  files: Record<string, string>,
  use: (dir: string, chownTo: (uid: number) => void) => Promise<T>,
): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-run-'))
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

/** Collects truncated output and enforces the wall clock and cancellation on a started child. */
async function supervise(
  child: ChildProcess,
  limits: SandboxLimits,
  signal?: AbortSignal,
): Promise<ExecResult> {
  const started = performance.now()
  let timedOut = false
  let cancelled = false
  const chunks: Uint8Array[] = []
  let kept = 0
  let dropped = 0
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const reader = stream.getReader()
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) return
        const room = limits.outputBytes - kept
        if (room > 0) {
          const part = value.byteLength > room ? value.subarray(0, room) : value
          chunks.push(part)
          kept += part.byteLength
        }
        dropped += Math.max(0, value.byteLength - Math.max(0, room))
      }
    } catch {
      // the pipe broke when the process was killed
    }
  }
  const kill = () => child.killGroup('SIGKILL')
  const onAbort = () => {
    cancelled = true
    kill()
  }
  if (signal?.aborted) onAbort()
  signal?.addEventListener('abort', onAbort, { once: true })
  const timer = setTimeout(() => {
    timedOut = true
    kill()
  }, limits.wallClockMs)
  const reading = Promise.all([collect(child.stdout), collect(child.stderr)])
  const exitCode = await child.exited
  // Whatever it left behind in its process group goes too; then the pipes close.
  kill()
  await Promise.race([reading, new Promise((r) => setTimeout(r, 1000))])
  clearTimeout(timer)
  signal?.removeEventListener('abort', onAbort)
  let output = Buffer.concat(chunks).toString('utf8')
  if (dropped > 0) output += `\n… [output truncated: ${dropped} more bytes]`
  return {
    exitCode,
    timedOut,
    cancelled,
    output,
    truncated: dropped > 0,
    durationMs: Math.round(performance.now() - started),
  }
}
