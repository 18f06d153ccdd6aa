/**
 * Where generated code is written to run: one folder per server instance, named after its pid
 * (`gantry-sandbox-<pid>-<random>`), holding a fresh `run-…` folder per test run. The instance removes its
 * folder when it stops; a server killed with -9 cannot, so every server sweeps at start the folders whose
 * owner is gone — never a live instance's.
 *
 * The folder lives under `DATA_DIR/sandbox/`. When the sandbox's unprivileged uid cannot reach it (or the
 * `bun` and `typescript` the server runs from — a checkout inside a mode-700 folder), the instance moves to
 * a folder of its own in the system temp dir and hard-links (or copies) those two in: see `portable()`.
 */
import { randomBytes } from 'node:crypto'
import {
  chmodSync,
  copyFileSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { processAlive } from '../../src/core/runtime.ts'

const PREFIX = 'gantry-sandbox-'
const NAME = /^gantry-sandbox-(\d+)-[\w-]+$/
/** The folders instances in this process made: one named with this pid but not in here is a previous life's. */
const mine = new Set<string>()

/** The programs a run uses, by the paths it binds them from. */
export interface RuntimePaths {
  bun: string
  /** The typescript package folder, when installed. */
  tsDir?: string
}

export class WorkFolders {
  private constructor(
    /** This instance's folder (mode 0711: the sandbox uid may pass through, nobody may list it). */
    readonly dir: string,
  ) {
    mine.add(dir)
  }

  /** Makes this instance's folder under `root` (created if needed). */
  static under(root: string): WorkFolders {
    mkdirSync(root, { recursive: true, mode: 0o711 })
    const dir = join(root, `${PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`)
    mkdirSync(dir, { mode: 0o711 })
    chmodSync(dir, 0o711) // whatever the umask
    return new WorkFolders(dir)
  }

  /** A fresh, private folder for one run. */
  newRun(): string {
    return mkdtempSync(join(this.dir, 'run-'))
  }

  /**
   * A folder of this instance's own in the system temp dir (created by mkdtemp, so nobody else's), with the
   * runtime hard-linked in (copied across file systems): every path a run binds is then reachable by any uid.
   */
  static portable(runtime: RuntimePaths): { folders: WorkFolders; runtime: RuntimePaths } {
    const dir = mkdtempSync(join(tmpdir(), `${PREFIX}${process.pid}-`))
    chmodSync(dir, 0o711)
    const folders = new WorkFolders(dir)
    const into = join(dir, 'runtime')
    mkdirSync(into, { mode: 0o755 })
    const bun = join(into, 'bun')
    linkOrCopy(runtime.bun, bun)
    let tsDir: string | undefined
    if (runtime.tsDir) {
      tsDir = join(into, 'typescript')
      linkTree(runtime.tsDir, tsDir)
    }
    return { folders, runtime: { bun, tsDir } }
  }

  /** Removes this instance's folder (at stop). */
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true })
    mine.delete(this.dir)
  }
}

function linkOrCopy(from: string, to: string): void {
  try {
    linkSync(from, to)
  } catch {
    copyFileSync(from, to) // another file system, or links not allowed
    chmodSync(to, statSync(from).mode & 0o755)
  }
}

function linkTree(from: string, to: string): void {
  mkdirSync(to, { mode: 0o755 })
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = join(from, entry.name)
    if (entry.isDirectory()) linkTree(source, join(to, entry.name))
    else if (entry.isFile()) linkOrCopy(source, join(to, entry.name))
  }
}

/**
 * Removes the instance folders under `root` and in the system temp dir whose server is gone. A folder named
 * after this very pid that no instance here made is a previous life of the pid (a container restarted after
 * a kill, its server pid 1 again).
 */
export function sweepWorkFolders(root: string): string[] {
  const removed: string[] = []
  const myUid = typeof process.getuid === 'function' ? process.getuid() : -1
  for (const parent of [root, tmpdir()]) {
    let names: string[]
    try {
      names = readdirSync(parent)
    } catch {
      continue
    }
    for (const name of names) {
      const pid = Number(NAME.exec(name)?.[1])
      if (!pid) continue
      const path = join(parent, name)
      if (mine.has(path)) continue
      if (pid !== process.pid && processAlive(pid)) continue
      try {
        // In the shared temp dir, only what this user made (and never through a link).
        const st = lstatSync(path)
        if (!st.isDirectory() || (parent !== root && st.uid !== myUid)) continue
        rmSync(path, { recursive: true, force: true })
        removed.push(path)
      } catch {
        // gone meanwhile
      }
    }
  }
  return removed
}
