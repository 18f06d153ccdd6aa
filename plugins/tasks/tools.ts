/** Tools the sessions plugin's agents may call: start a coding task, list the caller's tasks. */
import type { Gantry } from '../../src/core/context.ts'
import type { Tool } from '../../src/core/tools.ts'
import { MAX_PROMPT_CHARS } from './model.ts'
import { createTask, listTasks, taskView } from './service.ts'

export function registerTaskTools(gantry: Gantry): (() => void)[] {
  const startTask: Tool = {
    name: 'start_coding_task',
    description:
      'Start a background coding task: Gantry plans the program, writes TypeScript modules with tests, runs them and iterates. Returns the task id; progress is at /tasks/<id>.',
    parameters: {
      type: 'object',
      properties: { prompt: { type: 'string', description: 'What to build, in a sentence or two' } },
      required: ['prompt'],
    },
    async run(args, ctx) {
      const prompt = typeof args.prompt === 'string' ? args.prompt.trim() : ''
      if (!prompt || prompt.length > MAX_PROMPT_CHARS)
        return { content: `prompt must be 1 to ${MAX_PROMPT_CHARS} characters`, isError: true }
      const task = await createTask(ctx.gantry, ctx.user, { prompt })
      return { content: JSON.stringify({ task_id: task.id, status: task.status }) }
    },
  }
  const listMine: Tool = {
    name: 'list_my_tasks',
    description: "List the caller's 20 most recent coding tasks with their status and progress.",
    parameters: { type: 'object', properties: {} },
    async run(_args, ctx) {
      const { rows } = await listTasks(ctx.gantry, ctx.user, { limit: 20, offset: 0 })
      return {
        content: JSON.stringify(
          rows.map(taskView).map((t) => ({
            task_id: t.task_id,
            status: t.status,
            prompt: t.prompt.slice(0, 200),
            progress: t.progress,
            modules_complete: t.modules_complete,
            total_modules: t.total_modules,
          })),
        ),
      }
    },
  }
  return [gantry.tools.register(startTask), gantry.tools.register(listMine)]
}
