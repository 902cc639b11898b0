/** The job conformance suite (test/pull/conformance.ts), its jobs part, against the pull method: a real hub and agent process. */
import { conformance } from './conformance.js';

conformance('pull', 'jobs');
