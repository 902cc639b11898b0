/** The pull method's own conformance cases (test/pull/conformance.ts): the hub and the agent restarted, the agent's link cut, mid-job. */
import { conformance } from './conformance.js';

conformance('pull', 'restarts');
