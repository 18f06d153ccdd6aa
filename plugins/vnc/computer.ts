import type { Gantry } from '../../src/core/context.ts'
import type { Tool, ToolContext, ToolResult } from '../../src/core/tools.ts'
import type { Desktop } from './desktop.ts'
import { runCommand } from './runtime.ts'
import { connectDesktop, desktopOf, mayUseDesktop } from './service.ts'

const ACTIONS = [
  'screenshot',
  'mouse_move',
  'click',
  'double_click',
  'drag',
  'scroll',
  'type',
  'key',
] as const
type Action = (typeof ACTIONS)[number]

const BUTTONS = { left: '1', middle: '2', right: '3' } as const
const SCROLL_BUTTONS = { up: '4', down: '5', left: '6', right: '7' } as const
const MAX_TEXT = 4000
// xdotool key names: letters, digits and _ joined by +, e.g. ctrl+shift+t, Return, F5; several separated by spaces.
const KEY_COMBO = /^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$/
const COMMAND_TIMEOUT_MS = 15_000

/** A tool argument the model got wrong: reported back to it as an error it can correct. */
class BadArgument extends Error {}

const integerArg = (args: Record<string, unknown>, name: string, max: number): number => {
  const v = args[name]
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new BadArgument(`"${name}" must be an integer`)
  if (v < 0 || v >= max) throw new BadArgument(`"${name}" must be from 0 to ${max - 1} (got ${v})`)
  return v
}

const choiceArg = <T extends Record<string, string>>(
  args: Record<string, unknown>,
  name: string,
  choices: T,
  fallback: keyof T,
): T[keyof T] => {
  const v = args[name] ?? fallback
  if (typeof v !== 'string' || !(v in choices))
    throw new BadArgument(`"${name}" must be one of ${Object.keys(choices).join(', ')}`)
  return choices[v as keyof T]
}

/** The pointer position, when the action names one: both x and y, or neither. */
function pointAt(args: Record<string, unknown>, desktop: Desktop): string[] {
  if (args.x === undefined && args.y === undefined) return []
  const x = integerArg(args, 'x', desktop.size.width)
  const y = integerArg(args, 'y', desktop.size.height)
  return ['mousemove', String(x), String(y)]
}

/** xdotool arguments for one action, after checking every argument against the screen. */
export function xdotoolArgs(action: Action, args: Record<string, unknown>, desktop: Desktop): string[] {
  switch (action) {
    case 'mouse_move': {
      const x = integerArg(args, 'x', desktop.size.width)
      const y = integerArg(args, 'y', desktop.size.height)
      return ['mousemove', String(x), String(y)]
    }
    case 'click':
      return [...pointAt(args, desktop), 'click', choiceArg(args, 'button', BUTTONS, 'left')]
    case 'double_click':
      return [
        ...pointAt(args, desktop),
        'click',
        '--repeat',
        '2',
        '--delay',
        '80',
        choiceArg(args, 'button', BUTTONS, 'left'),
      ]
    case 'drag': {
      const from = pointAt(args, desktop)
      if (!from.length) throw new BadArgument('"x" and "y" (the start of the drag) are required')
      const toX = integerArg(args, 'to_x', desktop.size.width)
      const toY = integerArg(args, 'to_y', desktop.size.height)
      return [...from, 'mousedown', '1', 'mousemove', String(toX), String(toY), 'mouseup', '1']
    }
    case 'scroll': {
      const amount = args.amount ?? 3
      if (typeof amount !== 'number' || !Number.isInteger(amount) || amount < 1 || amount > 50)
        throw new BadArgument('"amount" must be an integer from 1 to 50')
      const button = choiceArg(args, 'direction', SCROLL_BUTTONS, 'down')
      return [...pointAt(args, desktop), 'click', '--repeat', String(amount), button]
    }
    case 'type': {
      const text = args.text
      if (typeof text !== 'string' || !text) throw new BadArgument('"text" must be a non-empty string')
      if (text.length > MAX_TEXT) throw new BadArgument(`"text" is longer than ${MAX_TEXT} characters`)
      // "--" so that text starting with "-" is typed, not read as an option.
      return ['type', '--delay', '8', '--', text]
    }
    case 'key': {
      const keys = typeof args.key === 'string' ? args.key.trim().split(/\s+/) : []
      if (!keys.length || !keys.every((k) => KEY_COMBO.test(k)))
        throw new BadArgument('"key" must be xdotool key names joined by +, e.g. "ctrl+l" or "Return"')
      return ['key', '--', ...keys]
    }
    case 'screenshot':
      return []
  }
}

/** The desktop of this app, started with the default size when it is not running (the agent needs one). */
async function readyDesktop(gantry: Gantry): Promise<Desktop> {
  const desktop = desktopOf(gantry)
  if (desktop.state !== 'running') await connectDesktop(desktop, undefined)
  return desktop
}

async function screenshot(desktop: Desktop, signal: AbortSignal): Promise<ToolResult> {
  const result = await runCommand([desktop.binaries.paths.import!, '-window', 'root', 'png:-'], {
    env: { ...process.env, ...desktop.clientEnv() },
    timeoutMs: COMMAND_TIMEOUT_MS,
    signal,
  })
  if (result.code !== 0 || result.stdout.byteLength < 8)
    return {
      content: `The screenshot failed: ${result.stderr.trim() || `exit ${result.code}`}`,
      isError: true,
    }
  return {
    content: `Screenshot of the desktop (${desktop.size.width}x${desktop.size.height} PNG).`,
    images: [Buffer.from(result.stdout).toString('base64')],
  }
}

async function runAction(ctx: ToolContext, args: Record<string, unknown>): Promise<ToolResult> {
  const action = args.action
  if (typeof action !== 'string' || !(ACTIONS as readonly string[]).includes(action))
    throw new BadArgument(`"action" must be one of ${ACTIONS.join(', ')}`)
  if (!mayUseDesktop(ctx.gantry, ctx.user))
    return { content: 'This user may not use the desktop (VNC_ALLOWED_ROLES).', isError: true }
  const desktop = await readyDesktop(ctx.gantry)
  if (action === 'screenshot') return screenshot(desktop, ctx.signal)
  const xdotool = desktop.binaries.paths.xdotool
  if (!xdotool) return { content: 'xdotool is not installed (apt install xdotool).', isError: true }
  const argv = xdotoolArgs(action as Action, args, desktop)
  const result = await runCommand([xdotool, ...argv], {
    env: { ...process.env, ...desktop.clientEnv() },
    timeoutMs: COMMAND_TIMEOUT_MS,
    signal: ctx.signal,
  })
  if (result.code !== 0)
    return {
      content: `xdotool ${action} failed: ${result.stderr.trim() || `exit ${result.code}`}`,
      isError: true,
    }
  return {
    content: `Done: ${action}${argv.includes('mousemove') ? ` at ${argv.slice(1, 3).join(',')}` : ''}.`,
  }
}

/** The `computer` tool: look at and drive the agent desktop with screenshots, the mouse and the keyboard. */
export const computerTool: Tool = {
  name: 'computer',
  description:
    'Use the virtual desktop: take a screenshot (PNG), move the mouse, click, double click, drag, scroll, type text or press keys. Coordinates are pixels from the top-left corner; take a screenshot first to see the screen.',
  parameters: {
    type: 'object',
    properties: {
      action: { type: 'string', enum: [...ACTIONS], description: 'What to do' },
      x: { type: 'integer', description: 'Pointer x (mouse_move, click, double_click, drag start, scroll)' },
      y: { type: 'integer', description: 'Pointer y' },
      to_x: { type: 'integer', description: 'Drag end x' },
      to_y: { type: 'integer', description: 'Drag end y' },
      button: { type: 'string', enum: Object.keys(BUTTONS), description: 'Mouse button (left)' },
      direction: {
        type: 'string',
        enum: Object.keys(SCROLL_BUTTONS),
        description: 'Scroll direction (down)',
      },
      amount: { type: 'integer', description: 'Scroll steps, 1-50 (3)' },
      text: { type: 'string', description: 'Text to type' },
      key: { type: 'string', description: 'Keys to press, xdotool names: "Return", "ctrl+l", "alt+F4"' },
    },
    required: ['action'],
  },
  async run(args, ctx) {
    try {
      return await runAction(ctx, args)
    } catch (err) {
      if (err instanceof BadArgument) return { content: `Invalid arguments: ${err.message}`, isError: true }
      return { content: `The desktop is not usable: ${(err as Error).message}`, isError: true }
    }
  },
}

const DESKTOP_AGENT_PROMPT = `You operate a Linux desktop through the "computer" tool. Start with a screenshot, act in small
steps, and take another screenshot after each action to check its effect before the next one. Say what you see
and what you are about to do. Stop and report when the task is done or cannot be done.`

/** Registers the `computer` tool and the built-in `desktop` agent; returns the function that removes both. */
export function registerComputer(gantry: Gantry): () => void {
  const removeTool = gantry.tools.register(computerTool)
  const removeAgent = gantry.tools.registerAgent({
    name: 'desktop',
    description: 'Works on the virtual desktop with screenshots, the mouse and the keyboard.',
    systemPrompt: DESKTOP_AGENT_PROMPT,
    tools: ['computer'],
  })
  return () => {
    removeTool()
    removeAgent()
  }
}
