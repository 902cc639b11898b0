/** The pull method's own conformance cases (test/pull/conformance.ts): the hub and the agent restarted mid-job. */
import { conformance } from './conformance.js';

conformance('pull', 'restarts');
