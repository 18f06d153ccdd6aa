#!/usr/bin/env node
// The `gantry` terminal client's entry for plain Node (what `npx gantry` and a global install run): the client
// itself is TypeScript for Bun, so find the `bun` this package depends on and run src/cli/gantry/main.ts under
// it with the same arguments, the same terminal, and its exit code or signal passed back.
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(join(root, 'package.json'))

function bunBinary() {
  try {
    const manifest = require.resolve('bun/package.json')
    const bin = require('bun/package.json').bin
    return join(dirname(manifest), typeof bin === 'string' ? bin : bin.bun)
  } catch {
    return undefined
  }
}

const bun = bunBinary()
if (!bun) {
  process.stderr.write(
    'gantry: the bun dependency is not installed here; run `npm install` in the gantry folder.\n',
  )
  process.exit(2)
}

const child = spawn(bun, [join(root, 'src/cli/gantry/main.ts'), ...process.argv.slice(2)], {
  stdio: 'inherit',
  env: process.env,
})

// A terminal's Ctrl-C reaches the whole process group, the child included; forwarding covers signals sent to
// this process alone (kill, a supervisor). The child treats a burst of SIGINTs as one.
const forwarded = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT']
const handlers = forwarded.map((signal) => {
  const handler = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
  }
  process.on(signal, handler)
  return [signal, handler]
})

child.on('error', (err) => {
  process.stderr.write(`gantry: could not start ${bun}: ${err.message}\n`)
  process.exit(2)
})

child.on('exit', (code, signal) => {
  for (const [name, handler] of handlers) process.off(name, handler)
  if (signal) process.kill(process.pid, signal)
  else process.exit(code ?? 1)
})
