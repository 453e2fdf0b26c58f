// Shared by the browser scenarios: Debian's chromium, headless, driven by playwright-core (never a downloaded browser).
import { execSync } from 'node:child_process';
import { chromium } from 'playwright-core';

export async function launch() {
  const executablePath = process.env.CHROMIUM || execSync('command -v chromium', { shell: '/bin/bash' }).toString().trim();
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

// A scenario fails with a message naming the step; pytest shows stdout/stderr of the node process.
export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

// Scenario arguments come as one JSON object in argv[2] (base URL, credentials, output folder …).
export function args() {
  return JSON.parse(process.argv[2] || '{}');
}
