/** The job conformance suite (test/pull/conformance.ts), its cuts part, against the pull method: a real hub and agent process. */
import { conformance } from './conformance.js';

conformance('pull', 'cuts');
