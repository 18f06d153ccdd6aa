// The modules the simulated model "knows how to write" for a coding task: real TypeScript and real bun:test
// tests that pass, so a task run against the simulator (`npm run mock:ollama`) completes the way it would
// with a capable model. Goals it has no recipe for get one generic, still working, module.

export interface RecipeModule {
  name: string
  purpose: string
  interface: string
  code: string
  tests: string
}

export interface Recipe {
  /** Matched against the lower-cased goal. */
  goal: RegExp
  modules: RecipeModule[]
}

const lines = (...text: string[]) => `${text.join('\n')}\n`

const EMAIL_VALIDATOR: RecipeModule = {
  name: 'validator',
  purpose: 'decide whether a string is a well-formed email address, with a regex and no dependencies',
  interface: 'export function isValidEmail(address: string): boolean',
  code: lines(
    "// A dot-atom local part (RFC 5322's common form) and a domain of DNS labels with an alphabetic TLD.",
    "const LOCAL = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/",
    'const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/',
    '',
    'export function isValidEmail(address: string): boolean {',
    '  if (address.length > 254) return false',
    "  const at = address.lastIndexOf('@')",
    "  if (at <= 0 || address.indexOf('@') !== at) return false",
    '  const local = address.slice(0, at)',
    "  const labels = address.slice(at + 1).split('.')",
    '  if (local.length > 64 || !LOCAL.test(local) || labels.length < 2) return false',
    "  const tld = labels[labels.length - 1] ?? ''",
    '  return labels.every((label) => LABEL.test(label)) && /^[A-Za-z]{2,}$/.test(tld)',
    '}',
  ),
  tests: lines(
    "import { expect, test } from 'bun:test'",
    "import { isValidEmail } from './validator.ts'",
    '',
    "test('accepts plain addresses', () => expect(isValidEmail('alice@example.com')).toBe(true))",
    "test('accepts dots, plus tags and subdomains', () => expect(isValidEmail('a.b+tag@mail.example.co.uk')).toBe(true))",
    "test('refuses a missing @', () => expect(isValidEmail('alice.example.com')).toBe(false))",
    "test('refuses two @', () => expect(isValidEmail('a@b@example.com')).toBe(false))",
    "test('refuses an empty local part or a bare domain', () => {",
    "  expect(isValidEmail('@example.com')).toBe(false)",
    "  expect(isValidEmail('alice@localhost')).toBe(false)",
    '})',
    "test('refuses dots in the wrong place', () => {",
    "  expect(isValidEmail('.alice@example.com')).toBe(false)",
    "  expect(isValidEmail('al..ice@example.com')).toBe(false)",
    "  expect(isValidEmail('alice@-example.com')).toBe(false)",
    '})',
  ),
}

const EMAIL_NORMALIZE: RecipeModule = {
  name: 'normalize',
  purpose: 'normalize an email address before it is compared or stored: trim it, lower-case the domain',
  interface: 'export function normalizeEmail(address: string): string',
  code: lines(
    '// The local part is case-sensitive by the RFC; only the domain is safe to lower-case.',
    'export function normalizeEmail(address: string): string {',
    '  const trimmed = address.trim()',
    "  const at = trimmed.lastIndexOf('@')",
    '  if (at < 0) return trimmed',
    "  return trimmed.slice(0, at) + '@' + trimmed.slice(at + 1).toLowerCase()",
    '}',
  ),
  tests: lines(
    "import { expect, test } from 'bun:test'",
    "import { normalizeEmail } from './normalize.ts'",
    '',
    "test('trims whitespace', () => expect(normalizeEmail('  bob@example.com \\n')).toBe('bob@example.com'))",
    "test('lower-cases the domain only', () => expect(normalizeEmail('Bob@Example.COM')).toBe('Bob@example.com'))",
    "test('leaves text without @ trimmed', () => expect(normalizeEmail(' nobody ')).toBe('nobody'))",
  ),
}

const SLUGIFY: RecipeModule = {
  name: 'slugify',
  purpose: 'turn a title into a URL slug',
  interface: 'export function slugify(title: string): string',
  code: lines(
    'export function slugify(title: string): string {',
    '  return title',
    "    .normalize('NFKD')",
    "    .replace(/[\\u0300-\\u036f]/g, '')",
    '    .toLowerCase()',
    "    .replace(/[^a-z0-9]+/g, '-')",
    "    .replace(/^-+|-+$/g, '')",
    '}',
  ),
  tests: lines(
    "import { expect, test } from 'bun:test'",
    "import { slugify } from './slugify.ts'",
    '',
    "test('joins words with dashes', () => expect(slugify('Hello, World!')).toBe('hello-world'))",
    "test('drops accents', () => expect(slugify('Crème brûlée')).toBe('creme-brulee'))",
    "test('is empty for punctuation only', () => expect(slugify('?!')).toBe(''))",
  ),
}

const PALINDROME: RecipeModule = {
  name: 'palindrome',
  purpose: 'tell whether a text reads the same backwards, ignoring case, spaces and punctuation',
  interface: 'export function isPalindrome(text: string): boolean',
  code: lines(
    'export function isPalindrome(text: string): boolean {',
    "  const letters = text.toLowerCase().replace(/[^a-z0-9]/g, '')",
    "  return letters === [...letters].reverse().join('')",
    '}',
  ),
  tests: lines(
    "import { expect, test } from 'bun:test'",
    "import { isPalindrome } from './palindrome.ts'",
    '',
    "test('a sentence palindrome', () => expect(isPalindrome('A man, a plan, a canal: Panama')).toBe(true))",
    "test('not a palindrome', () => expect(isPalindrome('gantry')).toBe(false))",
    "test('the empty text', () => expect(isPalindrome('')).toBe(true))",
  ),
}

const FIZZBUZZ: RecipeModule = {
  name: 'fizzbuzz',
  purpose: 'the FizzBuzz sequence from 1 to n',
  interface: 'export function fizzbuzz(n: number): string[]',
  code: lines(
    'export function fizzbuzz(n: number): string[] {',
    '  return Array.from({ length: Math.max(0, Math.floor(n)) }, (_, i) => {',
    '    const k = i + 1',
    "    return k % 15 === 0 ? 'FizzBuzz' : k % 3 === 0 ? 'Fizz' : k % 5 === 0 ? 'Buzz' : String(k)",
    '  })',
    '}',
  ),
  tests: lines(
    "import { expect, test } from 'bun:test'",
    "import { fizzbuzz } from './fizzbuzz.ts'",
    '',
    "test('the first fifteen', () => expect(fizzbuzz(15).slice(-3)).toEqual(['13', '14', 'FizzBuzz']))",
    "test('threes and fives', () => expect(fizzbuzz(5)).toEqual(['1', '2', 'Fizz', '4', 'Buzz']))",
    "test('nothing for zero', () => expect(fizzbuzz(0)).toEqual([]))",
  ),
}

export const RECIPES: Recipe[] = [
  { goal: /e-?mail/, modules: [EMAIL_VALIDATOR, EMAIL_NORMALIZE] },
  { goal: /slug/, modules: [SLUGIFY] },
  { goal: /palindrome/, modules: [PALINDROME] },
  { goal: /fizz/, modules: [FIZZBUZZ] },
]

const FILLER = new Set(
  'a an the build write create make implement develop code program small simple tiny some that which for to of and with in on module tool function'.split(
    ' ',
  ),
)

/** A lower-case file name from a goal: its first meaningful words, e.g. "Build a todo list" → "todo_list". */
export function moduleNameFor(goal: string): string {
  const words = goal
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((word) => word && !FILLER.has(word))
  const name = words
    .slice(0, 3)
    .join('_')
    .replace(/^[^a-z]+/, '')
    .slice(0, 40)
    .replace(/_+$/, '')
  return name || 'program'
}

const camel = (name: string) => name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())

/**
 * The module for a goal the simulator has no recipe for: honest about what it does (it describes a text),
 * named after the goal, typed strictly and tested.
 */
export function genericModule(name: string, goal: string): RecipeModule {
  const fn = `${camel(name)}Summary`
  return {
    name,
    purpose: `a first working piece of "${goal.slice(0, 80)}": describe an input text`,
    interface: `export function ${fn}(input: string): { words: number; lines: number; characters: number }`,
    code: lines(
      `// A first piece of: ${goal.replace(/\s+/g, ' ').slice(0, 120)}`,
      'export interface Summary {',
      '  words: number',
      '  lines: number',
      '  characters: number',
      '}',
      '',
      `export function ${fn}(input: string): Summary {`,
      '  const words = input.split(/\\s+/).filter(Boolean).length',
      "  const lines = input === '' ? 0 : input.split('\\n').length",
      '  return { words, lines, characters: [...input].length }',
      '}',
    ),
    tests: lines(
      "import { expect, test } from 'bun:test'",
      `import { ${fn} } from './${name}.ts'`,
      '',
      `test('counts words, lines and characters', () => {`,
      `  expect(${fn}('one two\\nthree')).toEqual({ words: 3, lines: 2, characters: 13 })`,
      '})',
      `test('an empty text is all zeros', () => {`,
      `  expect(${fn}('')).toEqual({ words: 0, lines: 0, characters: 0 })`,
      '})',
    ),
  }
}

/** The modules a goal is planned as. */
export function modulesForGoal(goal: string): RecipeModule[] {
  const recipe = RECIPES.find((r) => r.goal.test(goal.toLowerCase()))
  return recipe ? recipe.modules : [genericModule(moduleNameFor(goal), goal)]
}

/** The module to write for a planned name: the recipe's, else the generic one under that name. */
export function moduleNamed(name: string, goal: string): RecipeModule {
  for (const recipe of RECIPES) {
    const found = recipe.modules.find((m) => m.name === name)
    if (found) return found
  }
  return genericModule(name, goal)
}
