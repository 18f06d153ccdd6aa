/** Exit codes of `gantry`: what a script can rely on. */
export const EXIT = {
  ok: 0,
  /** The task failed or was cancelled, or the thing asked for does not exist. */
  failed: 1,
  /** Usage, connection or authentication problems: nothing was done. */
  usage: 2,
  /** The user stopped watching with Ctrl-C; the task goes on. */
  interrupted: 130,
} as const

/** A problem to report in one line and exit with; never a stack trace. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failed,
  ) {
    super(message)
  }
}

export const usageError = (message: string) => new CliError(message, EXIT.usage)
