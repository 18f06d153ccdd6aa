#!/usr/bin/env node
// Runs Deno at the pinned version without making it part of the default install: Deno is ~100 MB, and only
// `npm run start:deno`, the Deno tests and the Deno bench columns need it. On first use the npm `deno` package
// (which carries the binary for this platform as an optional dependency) is installed once into a cache
// folder under node_modules; later runs exec that binary directly. Arguments, the terminal, the exit code and
// signals pass straight through, so `node bin/deno.mjs run -A x.ts` behaves like `deno run -A x.ts`.
//
// `node bin/deno.mjs --print-path` installs if needed and prints the binary's path (for tests and benches that
// spawn Deno themselves). GANTRY_DENO=/path/to/deno skips the install and uses that binary.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const DENO_VERSION = '2.9.6'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const cache = join(root, 'node_modules', '.cache', `gantry-deno-${DENO_VERSION}`)

/** The name of the npm package that carries Deno's binary for this machine. */
function platformPackage() {
  const arch = process.arch === 'arm64' ? 'arm64' : 'x64'
  if (process.platform === 'linux') return `@deno/linux-${arch}-glibc`
  if (process.platform === 'darwin') return `@deno/darwin-${arch}`
  if (process.platform === 'win32') return `@deno/win32-${arch}`
  return undefined
}

function installedBinary() {
  const pkg = platformPackage()
  if (!pkg) return undefined
  const exe = join(cache, 'node_modules', pkg, process.platform === 'win32' ? 'deno.exe' : 'deno')
  return existsSync(exe) ? exe : undefined
}

function install() {
  mkdirSync(cache, { recursive: true })
  process.stderr.write(`deno: installing deno@${DENO_VERSION} once into ${cache}\n`)
  // --ignore-scripts: the package's postinstall only downloads what the optional platform package already holds.
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  const result = spawnSync(
    npm,
    [
      'install',
      '--prefix',
      cache,
      '--no-save',
      '--no-package-lock',
      '--no-audit',
      '--no-fund',
      '--ignore-scripts',
      `deno@${DENO_VERSION}`,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  )
  if (result.status !== 0) {
    process.stderr.write(`deno: npm install deno@${DENO_VERSION} failed (exit ${result.status})\n`)
    process.exit(2)
  }
}

export function denoBinary() {
  if (process.env.GANTRY_DENO) return process.env.GANTRY_DENO
  const found = installedBinary()
  if (found) return found
  install()
  const exe = installedBinary()
  if (!exe) {
    process.stderr.write(`deno: no Deno binary for ${process.platform}-${process.arch} after the install\n`)
    process.exit(2)
  }
  return exe
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]
if (isMain) {
  const deno = denoBinary()
  const args = process.argv.slice(2)
  if (args[0] === '--print-path') {
    process.stdout.write(`${deno}\n`)
    process.exit(0)
  }
  const child = spawn(deno, args, { stdio: 'inherit', env: process.env })
  // A terminal's Ctrl-C reaches the whole process group, the child included; forwarding covers signals sent to
  // this process alone (kill, a supervisor, a test stopping the server).
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT']) {
    process.on(signal, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    })
  }
  child.on('error', (err) => {
    process.stderr.write(`deno: could not start ${deno}: ${err.message}\n`)
    process.exit(2)
  })
  child.on('exit', (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal)
      process.kill(process.pid, signal)
    } else process.exit(code ?? 1)
  })
}
