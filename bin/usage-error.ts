// A command line the user must change: `chikai` prints the message and its usage and exits
// 2. Each command throws its own subclass (its name says which), and the entry point
// recognises them all by this one class without loading the commands.
export class UsageError extends Error {
  override name = 'UsageError';
}
