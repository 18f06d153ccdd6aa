/** What the desktop needs from the system: its binaries (and their packages) and VNC's password format. */
import { randomBytes } from 'node:crypto'
import { findBinary } from './runtime.ts'

/** Executables the plugin runs, with the Debian package that installs each. */
export const BINARIES = [
  { binary: 'Xvfb', package: 'xvfb', needed: 'desktop' },
  { binary: 'x11vnc', package: 'x11vnc', needed: 'desktop' },
  { binary: 'xdotool', package: 'xdotool', needed: 'tool' },
  { binary: 'import', package: 'imagemagick', needed: 'tool' },
] as const

/** Window managers tried in order; the desktop works without one (windows just have no frames). */
const WINDOW_MANAGERS = ['openbox', 'fluxbox', 'icewm', 'xfwm4', 'matchbox-window-manager', 'twm']

export interface Binaries {
  paths: Record<string, string>
  windowManager: string | null
  missing: Array<{ binary: string; package: string }>
}

/** Looks every binary up on PATH once (at plugin start). */
export function findBinaries(path = process.env.PATH ?? ''): Binaries {
  const paths: Record<string, string> = {}
  const missing: Binaries['missing'] = []
  for (const b of BINARIES) {
    const found = findBinary(b.binary, path)
    if (found) paths[b.binary] = found
    else missing.push({ binary: b.binary, package: b.package })
  }
  let windowManager: string | null = null
  for (const wm of WINDOW_MANAGERS) {
    windowManager = findBinary(wm, path)
    if (windowManager) break
  }
  return { paths, windowManager, missing }
}

/**
 * The `-passwdfile` format: the password on the first line. Plain text, in a 0600 file in a 0700 folder: the
 * `-rfbauth` format would not protect it more (it is only obscured with DES under a fixed, public key), and
 * writing it needs DES, which Deno's node:crypto does not have.
 */
export const vncPasswordFile = (password: string): string => `${password}\n`

/**
 * An Xauthority file (the format libXau reads) holding one MIT-MAGIC-COOKIE-1 for any address and any
 * display: Xvfb picks its display number itself (-displayfd), so the cookie must be written before that number
 * is known. Written directly, so no `xauth` binary is needed.
 */
export function xauthorityFile(cookie: Buffer): Buffer {
  const field = (bytes: Buffer) => {
    const length = Buffer.alloc(2)
    length.writeUInt16BE(bytes.length)
    return Buffer.concat([length, bytes])
  }
  const familyWild = Buffer.from([0xff, 0xff])
  const none = Buffer.alloc(0)
  return Buffer.concat([
    familyWild,
    field(none),
    field(none),
    field(Buffer.from('MIT-MAGIC-COOKIE-1')),
    field(cookie),
  ])
}

/** A fresh 128-bit X cookie: what a local process must present to use the desktop's display. */
export const newCookie = (): Buffer => randomBytes(16)

/** VNC uses only the first 8 characters of a password; 8 random alphanumerics are all it can hold. */
export function newPassword(): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789'
  return [...randomBytes(8)].map((b) => alphabet[b % alphabet.length]).join('')
}
