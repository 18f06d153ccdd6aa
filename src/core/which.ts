/**
 * Finding executables on PATH with `node:` modules only, so it works the same on Bun and Deno (Bun.which
 * does not exist on Deno). Names with a slash are checked as they are.
 */
import { accessSync, constants, statSync } from 'node:fs'
import { delimiter, isAbsolute, join, resolve } from 'node:path'

/** The path when it is an executable regular file, else undefined. */
function executable(path: string): string | undefined {
  try {
    accessSync(path, constants.X_OK)
    return statSync(path).isFile() ? path : undefined
  } catch {
    return undefined
  }
}

/** The absolute path of `name` on `path` (PATH by default), or `name` itself when it has a slash and exists. */
export function which(name: string, path: string = process.env.PATH ?? ''): string | undefined {
  if (!name) return undefined
  if (name.includes('/')) return executable(isAbsolute(name) ? name : resolve(name))
  for (const dir of path.split(delimiter)) {
    if (!dir) continue
    const found = executable(join(dir, name))
    if (found) return isAbsolute(found) ? found : resolve(found)
  }
  return undefined
}
