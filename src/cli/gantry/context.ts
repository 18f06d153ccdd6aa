import type { Command } from 'commander'
import { type Api, createApi } from './client.ts'
import { type Connection, resolveConnection } from './config.ts'
import { createOutput, type Output } from './output.ts'

/** What every command works with: where to connect, the typed client, and how to write. */
export interface Context {
  connection: Connection
  api: Api
  out: Output
}

export interface GlobalFlags {
  url?: string
  key?: string
  json?: boolean
}

export function contextOf(command: Command): Context {
  const flags = command.optsWithGlobals<GlobalFlags>()
  const connection = resolveConnection(flags)
  return { connection, api: createApi(connection), out: createOutput(flags) }
}

/** A command's action: it may return the exit code. */
// biome-ignore lint/suspicious/noConfusingVoidType: actions end with an exit code or with nothing to say
export type Action = (cmd: Command) => Promise<number | void>
/** Wraps an action for commander, which calls it with the arguments, the options and the command last. */
export type Run = (fn: Action) => (...args: any[]) => Promise<void>
